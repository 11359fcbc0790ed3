"""Cost curve on one machine: per-component wall time and peak memory at 1x, 3x, 10x (20x) data.

    make bench-scale     # = tools/with-stack python benchmarks/scale.py --factors 1 3 10

For each factor it makes the Nx training CSV (benchmarks/scale_data.py: every training image plus
N-1 shifted copies, the real test CSV unchanged) under --data-out, then runs the pipeline on it in
a fresh child process and a fresh output root (nothing cached). Inside the child a sampler thread
reads the resident memory of the whole process tree (the pipeline process plus any Beam worker
processes) every --sample-seconds; each component's peak is the largest sample inside its
execution's interval in ML Metadata (where its wall time comes from too), the run's peak the
largest sample overall (the kernel's ru_maxrss is reported next to it as a cross-check).

Results go to --json; --png draws the curve (seconds and GB against training rows).
`--data-only` stops after Transform; `--beam-modes` runs each factor once per DirectRunner mode,
back to back, to choose the Beam settings by measurement:

    tools/with-stack python benchmarks/scale.py --data-only --beam-modes --factors 1 10

`--flink` adds the same runs on a local Flink cluster (tools/flink, started and stopped by this
script) at parallelism 2 and 4, with the peak memory of each cluster process (JobManager, each
TaskManager JVM, each worker pool with its SDK harnesses, the job server) besides the pipeline's:

    make bench-flink    # = ... scale.py --data-only --flink --factors 1 10 (in_memory, flink p2, flink p4)

A Flink job that stops using CPU (Beam's data-plane deadlock, FlinkStallWatch) is cancelled after
--stall-seconds and recorded as a failed step, so the run goes on.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import ROOT, data_pipeline, write_result

log = logging.getLogger(__name__)

GB = 1024 ** 3
BEAM_MODES = {
    "in_memory": "--direct_running_mode=in_memory --direct_num_workers=1",
    "multi_processing x2": "--direct_running_mode=multi_processing --direct_num_workers=2",
}


FLINK_PARALLELISM = (2, 4)


def tree_rss(process) -> float:
    """Resident GB of a process and its children (Beam workers, SDK harnesses)."""
    import psutil
    total = 0
    try:
        tree = [process] + process.children(recursive=True)
    except psutil.Error:          # the process itself is gone (a TaskManager lost in a run)
        return 0.0
    for p in tree:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / GB


class Periodic:
    """Runs `tick` every `interval` seconds in a daemon thread while inside a `with` block."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class TreeMemory(Periodic):
    """Samples the resident memory of this process and its children (Beam workers) in a thread, and
    of each process of a Flink cluster when `flink_state` names one (tools/flink's PID files)."""

    def __init__(self, interval: float, flink_state: str | None = None) -> None:
        import psutil
        super().__init__(interval)
        self.process = psutil.Process()
        self.samples: list[tuple[float, float]] = []    # (unix time, GB)
        self.cluster_peaks: dict[str, float] = {}       # cluster process -> peak GB (with children)
        self.cluster = {}
        for pid_file in sorted(Path(flink_state).glob("*.pid")) if flink_state else []:
            with contextlib.suppress(psutil.Error, ValueError):
                self.cluster[pid_file.stem] = psutil.Process(int(pid_file.read_text()))

    def tree_rss(self) -> float:
        return tree_rss(self.process)

    def tick(self) -> None:
        self.samples.append((time.time(), self.tree_rss()))
        for name, process in self.cluster.items():
            self.cluster_peaks[name] = max(self.cluster_peaks.get(name, 0.0), tree_rss(process))

    def peak(self, start: float = 0.0, end: float = float("inf")) -> float:
        return max((gb for t, gb in self.samples if start <= t <= end), default=0.0)


class FlinkStallWatch(Periodic):
    """Cancels the running Flink job when the run stops using CPU: what a deadlocked job looks like.

    On Beam's portable Flink runner a batch task is one SDK bundle, and the TaskManager drains a
    bundle's output only once the harness has finished it (SdkHarnessClient.ActiveBundle.close waits
    for the ProcessBundleResponse before BeamFnDataInboundObserver.awaitCompletion; the observer
    queues at most 100 Elements messages, CancellableQueue(100), each up to the Python harness's 10 MB
    flush). A task whose output is larger than that waits for ever, with no error, and every process
    sits idle (BENCHMARKS.md "Beam on Flink"). Cancelling the job turns the hang into a failed step that
    the result records, and the benchmark goes on."""

    def __init__(self, processes: list, rest: str, stall_seconds: float, interval: float = 10.0) -> None:
        super().__init__(interval)
        self.processes, self.rest, self.stall_seconds = processes, rest, stall_seconds
        self.stalled: str | None = None
        self._samples: list[tuple[float, float]] = []     # (monotonic seconds, CPU seconds used)
        self._last: dict[tuple[int, float], float] = {}
        self._used, self._started = 0.0, False

    def _get(self, path: str):
        import urllib.request
        with urllib.request.urlopen(self.rest + path, timeout=10) as r:
            return json.load(r)

    def _cpu_seconds(self) -> float:
        """CPU seconds the watched trees used since the watch started. Counted per process, by its
        increments: an SDK harness that exits between two looks takes its own total with it."""
        import psutil
        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                for p in [process] + process.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        t = p.cpu_times()
                        key = (p.pid, p.create_time())
                        now = t.user + t.system
                        if self._started:     # a process first seen later started since the last look
                            self._used += now - self._last.get(key, 0.0)
                        self._last[key] = now
        self._started = True
        return self._used

    def tick(self) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):   # the REST API unreachable for a look
            self._check()

    def _check(self) -> None:
        import urllib.request
        running = [j for j in self._get("/jobs/overview")["jobs"] if j["state"] == "RUNNING"]
        now = time.monotonic()
        self._samples = [s for s in self._samples if now - s[0] <= self.stall_seconds + 3 * self.interval]
        self._samples.append((now, self._cpu_seconds()))
        # The window: from the newest look at least stall_seconds old to now.
        base = next((s for s in reversed(self._samples) if now - s[0] >= self.stall_seconds), None)
        if not running or base is None or running[0]["duration"] < self.stall_seconds * 1000:
            return
        seconds, used = now - base[0], self._samples[-1][1] - base[1]
        # Idle, this process (its memory sampler), the TaskManagers and the pools use ~5% of a
        # core together (measured here); a running stage, 50-100% or more.
        if used > 0.15 * seconds:
            return
        job = running[0]
        tasks = [v["name"] for v in self._get(f"/jobs/{job['jid']}")["vertices"] if v["status"] == "RUNNING"]
        self.stalled = (f"Flink job {job['name']} stalled: {used:.1f} s of CPU in {seconds:.0f} s "
                        f"with running tasks {'; '.join(t[:100] for t in tasks)}")
        log.warning("%s -- cancelling it", self.stalled)
        urllib.request.urlopen(urllib.request.Request(f"{self.rest}/jobs/{job['jid']}?mode=cancel",
                                                      method="PATCH"), timeout=10).close()
        self._samples = []


def component_intervals(metadata_path: str) -> dict[str, tuple[float, float]]:
    """Node name -> (start, end) unix seconds of its execution in the latest run, from ML Metadata."""
    from ml_metadata.metadata_store import metadata_store

    from pipeline import runner

    store = metadata_store.MetadataStore(runner.metadata_config(metadata_path))
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: (c.create_time_since_epoch, c.id))
    out = {}
    for execution in store.get_executions_by_context(run.id):
        node = next((c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(execution.id)
                     if c.type == "node"), str(execution.id))
        out[node] = (execution.create_time_since_epoch / 1000, execution.last_update_time_since_epoch / 1000)
    return out


def one_run(args: argparse.Namespace) -> dict:
    """In the child: run the pipeline on args.data, return the figures."""
    from tfx import v1 as tfx

    from pipeline import runner
    from pipeline.config import load_config
    from pipeline.pipeline import create_pipeline
    from schema import contract

    overrides = {"data_root": args.data, "output_root": args.output, "enable_cache": False}
    for pair in args.set or []:
        key, value = pair.split("=", 1)
        overrides[key] = value
    config = load_config(args.preset, overrides=overrides)
    pipeline = (data_pipeline(config) if args.data_only else
                create_pipeline(config, metadata_connection_config=runner.metadata_config(config.metadata_path)))
    if args.transform_without_statistics:  # experiment: what Transform's own TFDV passes cost
        transform = next(c for c in pipeline.components if c.id == "Transform")
        transform.exec_properties["disable_statistics"] = 1
    started = time.monotonic()
    error = None
    with contextlib.ExitStack() as stack:
        stack.enter_context(runner.run_scratch())  # the executors' leftovers: a TFX sdist per Beam step
        memory = stack.enter_context(
            TreeMemory(args.sample_seconds, os.environ.get("FLINK_STATE") if args.flink_child else None))
        # The processes that do the work: this one, the TaskManagers and the worker pools with their
        # harnesses. The JobManager and the job server are left out: idle, they use ~3% of a core each.
        workers = [p for name, p in memory.cluster.items() if name.startswith(("taskmanager", "worker-pool"))]
        watch = (stack.enter_context(FlinkStallWatch(
            [memory.process, *workers],
            f"http://127.0.0.1:{os.environ.get('FLINK_REST_PORT', '8081')}", args.stall_seconds))
            if args.flink_child else None)
        try:
            tfx.orchestration.LocalDagRunner().run(pipeline)
        except Exception as e:  # reported in the result, the parent decides
            error = runner.root_cause(e)
    if watch and watch.stalled:
        error = f"{watch.stalled} (cancelled; the step failed: {error})"
    wall = time.monotonic() - started
    summary = runner.summarize(config)
    intervals = component_intervals(config.metadata_path)
    shards = {}
    for component, key in ((contract.EXAMPLE_GEN, "examples"), ("Transform", "transformed_examples")):
        ran = summary.component(component)
        if ran and ran.outputs.get(key):
            shards[key] = len(os.listdir(os.path.join(ran.outputs[key][0].uri, "Split-train")))
    return {
        "data": args.data, "train_shards": shards, "preset": args.preset, "overrides": args.set or [],
        "beam_args": list(config.beam_args),
        "wall_seconds": round(wall, 1),
        "peak_rss_gb": round(memory.peak(), 3),
        "ru_maxrss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB, 3),
        "ru_maxrss_children_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / GB, 3),
        "components": {c.name: {"seconds": round(c.seconds, 1),
                                "peak_rss_gb": round(memory.peak(*intervals[c.name]), 3)}
                       for c in summary.components},
        "data_digest": data_digest(summary),
        "cluster_peak_rss_gb": {k: round(v, 3) for k, v in memory.cluster_peaks.items()},
        "accuracy": summary.metrics.get("overall", {}).get("sparse_categorical_accuracy"),
        # Every 10th sample: enough to draw the run's memory over time.
        "rss_trace": [(round(t - memory.samples[0][0], 1), round(gb, 3)) for t, gb in memory.samples[::10]],
        "failures": summary.failures + ([error] if error else []),
    }


def data_digest(summary) -> dict:
    """What the data components produced, comparable across runners: rows per split, and per split
    the statistics' example count, mean and a hash of every histogram (standard and quantiles).
    Equal digests of an in_memory and a Flink run = the same examples and statistics."""
    import hashlib

    import tensorflow_data_validation as tfdv

    from schema import contract

    out: dict = {"rows": {split: s["rows"] for split, s in (summary.data_input or {}).get("splits", {}).items()}}
    stats = summary.component(contract.STATISTICS_GEN)
    for split in (contract.TRAIN_SPLIT, contract.TEST_SPLIT) if stats and stats.outputs.get("statistics") else ():
        path = os.path.join(stats.outputs["statistics"][0].uri, f"Split-{split}", "FeatureStats.pb")
        dataset = tfdv.load_stats_binary(path).datasets[0]
        histograms = hashlib.sha256(b"".join(h.SerializeToString(deterministic=True)
                                             for f in dataset.features for h in f.num_stats.histograms))
        out[split] = {"num_examples": dataset.num_examples,
                      "means": [round(f.num_stats.mean, 9) for f in dataset.features if f.HasField("num_stats")],
                      "histograms_sha256": histograms.hexdigest()[:16]}
    transform = summary.component(contract.TRANSFORM)
    if transform and transform.outputs.get("transformed_examples") and transform.outputs.get("transform_graph"):
        out["transformed"] = {split: transformed_digest(transform.outputs["transform_graph"][0].uri,
                                                        transform.outputs["transformed_examples"][0].uri, split)
                              for split in (contract.TRAIN_SPLIT, contract.TEST_SPLIT)}
    return out


def transformed_digest(graph_uri: str, examples_uri: str, split: str) -> dict:
    """Transform's output for one split, summarised without regard to order or sharding (runners
    shard and order differently): the example count and, per feature, the sum and the sum of
    squares of its values in float64 (10 significant digits, far above the rounding that summing
    in another order causes), plus a hash of all of it. Equal hashes = the same transformed values."""
    import hashlib

    import tensorflow as tf
    import tensorflow_transform as tft

    from components.training.train_input import shard_files

    spec = tft.TFTransformOutput(graph_uri).transformed_feature_spec()
    files = shard_files([os.path.join(examples_uri, f"Split-{split}", "*")])  # what the Trainer reads
    batches = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096).map(
        lambda records: tf.io.parse_example(records, spec))
    count, sums, squares = 0, dict.fromkeys(spec, 0.0), dict.fromkeys(spec, 0.0)
    for batch in batches:
        count += int(tf.shape(next(iter(batch.values())))[0])
        for name, values in batch.items():
            values = tf.cast(values, tf.float64)
            sums[name] += float(tf.reduce_sum(values))
            squares[name] += float(tf.reduce_sum(values * values))
    summary = {"num_examples": count,
               "sums": {n: float(f"{v:.10g}") for n, v in sorted(sums.items())},
               "sums_of_squares": {n: float(f"{v:.10g}") for n, v in sorted(squares.items())}}
    summary["sha256"] = hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()[:16]
    return summary


def run_child(args: argparse.Namespace, data: Path, extra_sets: list[str] = (), flink: bool = False) -> dict:
    with contextlib.ExitStack() as stack:
        out = args.keep_output or stack.enter_context(tempfile.TemporaryDirectory(prefix="fmnist-scale-",
                                                                                  dir=args.work))
        cmd = [sys.executable, __file__, "--child", "--data", str(data), "--output", out,
               "--preset", args.preset, "--sample-seconds", str(args.sample_seconds)]
        cmd += sum((["--set", s] for s in [*(args.set or []), *extra_sets]), [])
        cmd += ["--data-only"] if args.data_only else []
        cmd += ["--flink-child", "--stall-seconds", str(args.stall_seconds)] if flink else []
        cmd += ["--transform-without-statistics"] if args.transform_without_statistics else []
        print(f"$ {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-3000:], file=sys.stderr)
            raise SystemExit(f"the run on {data} failed (exit {proc.returncode})")
        return json.loads(line[len("RESULT "):])


def plot(results: list[dict], png: Path) -> None:
    """Two panels against training rows: seconds per component, peak GB per component + run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r["train_rows"] for r in results]
    names = [n for n in results[-1]["components"] if max(r["components"].get(n, {}).get("seconds", 0)
                                                         for r in results) >= 5]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=80)
    for name in names:
        left.plot(rows, [r["components"].get(name, {}).get("seconds", 0) for r in results], "o-", label=name)
        right.plot(rows, [r["components"].get(name, {}).get("peak_rss_gb", 0) for r in results], "o-",
                   label=name)
    left.plot(rows, [r["wall_seconds"] for r in results], "k--", label="whole run")
    right.plot(rows, [r["peak_rss_gb"] for r in results], "k--", label="whole run")
    right.axhline(6, color="red", lw=0.8, ls=":", label="6 GB bound")
    left.set(xlabel="training rows", ylabel="wall seconds", title="time")
    right.set(xlabel="training rows", ylabel="peak RSS, GB (process tree)", title="memory")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(3, 3))
    left.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


def markdown(results: list[dict]) -> str:
    """The BENCHMARKS.md table: one row per component, one column per run, 'seconds / peak GB'."""
    heads = [f"{r['factor']}x ({r['train_rows']:,} rows){'' if r['mode'] == 'config' else ', ' + r['mode']}"
             for r in results]
    names = [n for n in results[-1]["components"]
             if max(r["components"].get(n, {}).get("seconds", 0) for r in results) >= 1]
    lines = ["| component | " + " | ".join(heads) + " |", "| --- |" + " ---: |" * len(results)]
    for n in names:
        cells = [f"{r['components'][n]['seconds']:.0f} s / {r['components'][n]['peak_rss_gb']:.2f} GB"
                 if n in r["components"] else "-" for r in results]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    if any(r.get("cluster_peak_rss_gb") for r in results):
        for name in sorted({n for r in results for n in r.get("cluster_peak_rss_gb", {})}):
            lines.append(f"| Flink: {name} (peak) | " + " | ".join(
                f"{r['cluster_peak_rss_gb'][name]:.2f} GB" if name in r.get("cluster_peak_rss_gb", {}) else "-"
                for r in results) + " |")
    lines.append("| **whole run** | " + " | ".join(f"**{r['wall_seconds']:.0f} s / {r['peak_rss_gb']:.2f} GB**"
                                             for r in results) + " |")
    if any(r.get("data_digest") for r in results):
        lines.append("| statistics digest (train) | " + " | ".join(
            r.get("data_digest", {}).get("train", {}).get("histograms_sha256", "-") for r in results) + " |")
    if any(r.get("data_digest", {}).get("transformed") for r in results):
        lines.append("| Transform's output digest (train / test) | " + " | ".join(
            " / ".join(r.get("data_digest", {}).get("transformed", {}).get(split, {}).get("sha256", "-")
                       for split in ("train", "test")) for r in results) + " |")
    if any(r.get("failures") for r in results):
        lines.append("| failed | " + " | ".join(
            "; ".join(str(f)[:160] for f in r["failures"]) if r.get("failures") else "-" for r in results) + " |")
    if any(r.get("accuracy") for r in results):
        lines.append("| test accuracy | " + " | ".join(f"{r['accuracy']:.4f}" if r.get("accuracy") else "-"
                                                     for r in results) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"),
                   help="the real data set the Nx copies are made from")
    p.add_argument("--data-out", default="/tmp/fmnist-scale", help="where the Nx CSVs are written")
    p.add_argument("--work", default=None, help="parent of the temporary output roots (default: TMPDIR)")
    p.add_argument("--factors", type=int, nargs="+", default=[1, 3, 10])
    p.add_argument("--preset", default="fast")
    p.add_argument("--set", action="append", help="config override key=value (default: epochs=1)")
    p.add_argument("--data-only", action="store_true", help="stop after Transform")
    p.add_argument("--transform-without-statistics", action="store_true",
                   help="experiment: Transform with disable_statistics (no pre/post-transform TFDV passes)")
    p.add_argument("--beam-modes", action="store_true", help="each factor under each DirectRunner mode")
    p.add_argument("--flink", action="store_true",
                   help=f"also on a local Flink cluster (tools/flink) at parallelism {FLINK_PARALLELISM}")
    p.add_argument("--flink-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--stall-seconds", type=float, default=180,
                   help="on Flink: cancel a job that ran on < 15%% of a core for this long (a deadlock)")
    p.add_argument("--sample-seconds", type=float, default=0.5)
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "scale.json"))
    p.add_argument("--png", default=None, help="draw the curve here (e.g. benchmarks/scale.png)")
    p.add_argument("--keep-output", help="output root to keep (one factor, one mode), e.g. for trainer_memory.py")
    p.add_argument("--markdown", metavar="JSON", help="print the table of an earlier run's JSON and exit")
    p.add_argument("--output", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("absl").propagate = False  # component progress is tracked, not printed
        print("RESULT " + json.dumps(one_run(args)), flush=True)
        return 0
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    if args.set is None:
        args.set = ["epochs=1"]
    from benchmarks import scale_data

    results = []
    modes = dict(BEAM_MODES) if args.beam_modes else {"config": None}
    if args.flink and not args.beam_modes:   # the comparison the Flink runs are for: DirectRunner's default
        modes = {"in_memory": BEAM_MODES["in_memory"]}
    flink = ROOT / "tools" / "flink"
    if args.flink:
        # One cluster for every run (4 slots: 2 TaskManagers x 2), its processes' memory sampled.
        os.environ.setdefault("FLINK_STATE", tempfile.mkdtemp(prefix="fmnist-bench-flink-"))
        subprocess.run([str(flink), "up"], check=True)
        for parallelism in FLINK_PARALLELISM:
            beam_args = subprocess.run([str(flink), "args"], check=True, capture_output=True, text=True,
                                       env={**os.environ, "BEAM_PARALLELISM": str(parallelism)}).stdout.strip()
            modes[f"flink p{parallelism}"] = beam_args
    try:
        for factor in args.factors:
            data = scale_data.make(Path(args.data), Path(args.data_out), factor)
            for mode, beam_args in modes.items():
                sets = [f"beam_args={beam_args}"] if beam_args else []
                result = {"factor": factor, "train_rows": factor * 60_000, "mode": mode,
                          **run_child(args, data, sets, flink=mode.startswith("flink"))}
                results.append(result)
                print(json.dumps(result, indent=1), file=sys.stderr, flush=True)
                write_result(args.json, results, echo=False)
    finally:
        if args.flink:
            subprocess.run([str(flink), "down"], check=False)
    if args.png:
        plot([r for r in results if r["mode"] == next(iter(modes))], Path(args.png))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
