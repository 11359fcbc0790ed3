"""Cost curve on one machine: per-component wall time and peak memory at 1x, 3x, 10x (20x) data.

    make bench-scale     # = tools/with-stack python benchmarks/scale.py --factors 1 3 10

For each factor it makes the Nx training CSV (benchmarks/scale_data.py: every training image plus
N-1 shifted copies, the real test CSV unchanged) under --data-out, then runs the pipeline on it in
a fresh child process and a fresh output root (nothing cached). Inside the child a sampler thread
reads the resident memory of the whole process tree (the pipeline process plus any Beam worker
processes) every --sample-seconds and charges it to the component that is running, so each
component gets its own peak; the run's peak is the largest sample (and the kernel's ru_maxrss is
reported next to it as a cross-check). Component times are read back from ML Metadata.

Results go to --json; --png draws the curve (seconds and GB against training rows).
`--data-only` stops after Transform (for Beam runner comparisons: `--set beam_args=...`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GB = 1024 ** 3


class ComponentMemory(logging.Handler):
    """Tracks which component runs (LocalDagRunner's 'Component X is running/finished' lines) and
    samples the process tree's RSS, keeping the peak per component and for the whole run."""

    PATTERN = re.compile(r"Component (\S+) is (running|finished)")

    def __init__(self, interval: float) -> None:
        super().__init__(logging.INFO)
        import psutil
        self.process = psutil.Process()
        self.interval = interval
        self.current = "(start-up)"
        self.peaks: dict[str, float] = {}
        self.run_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def emit(self, record: logging.LogRecord) -> None:
        m = self.PATTERN.search(record.getMessage())
        if m:
            self.current = m.group(1) if m.group(2) == "running" else "(between components)"

    def tree_rss(self) -> float:
        import psutil
        total = 0
        for p in [self.process] + self.process.children(recursive=True):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / GB

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self.tree_rss()
            self.peaks[self.current] = max(self.peaks.get(self.current, 0.0), rss)
            self.run_peak = max(self.run_peak, rss)

    def __enter__(self) -> "ComponentMemory":
        logging.getLogger("absl").addHandler(self)
        logging.getLogger("absl").setLevel(logging.INFO)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        logging.getLogger("absl").removeHandler(self)


def one_run(args: argparse.Namespace) -> dict:
    """In the child: run the pipeline on args.data, return the figures."""
    from tfx import v1 as tfx

    from pipeline import runner
    from pipeline.config import load_config
    from pipeline.pipeline import create_pipeline

    overrides = {"data_root": args.data, "output_root": args.output, "enable_cache": False}
    for pair in args.set or []:
        key, value = pair.split("=", 1)
        overrides[key] = value
    config = load_config(args.preset, overrides=overrides)
    pipeline = create_pipeline(config, metadata_connection_config=runner.metadata_config(config.metadata_path),
                               data_only=args.data_only)
    started = time.monotonic()
    error = None
    with ComponentMemory(args.sample_seconds) as memory:
        try:
            tfx.orchestration.LocalDagRunner().run(pipeline)
        except Exception as e:  # reported in the result, the parent decides
            error = runner.root_cause(e)
    wall = time.monotonic() - started
    summary = runner.summarize(config)
    return {
        "data": args.data, "preset": args.preset, "overrides": args.set or [],
        "beam_args": list(config.beam_args),
        "wall_seconds": round(wall, 1),
        "peak_rss_gb": round(memory.run_peak, 3),
        "ru_maxrss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB, 3),
        "ru_maxrss_children_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / GB, 3),
        "components": {c.name: {"seconds": round(c.seconds, 1),
                                "peak_rss_gb": round(memory.peaks.get(c.name, 0.0), 3)}
                       for c in summary.components},
        "accuracy": summary.metrics.get("overall", {}).get("sparse_categorical_accuracy"),
        "failures": summary.failures + ([error] if error else []),
    }


def run_child(args: argparse.Namespace, data: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="fmnist-scale-", dir=args.work) as out:
        cmd = [sys.executable, __file__, "--child", "--data", str(data), "--output", out,
               "--preset", args.preset, "--sample-seconds", str(args.sample_seconds)]
        cmd += sum((["--set", s] for s in args.set or []), []) + (["--data-only"] if args.data_only else [])
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
    p.add_argument("--sample-seconds", type=float, default=0.5)
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "scale.json"))
    p.add_argument("--png", default=None, help="draw the curve here (e.g. benchmarks/scale.png)")
    p.add_argument("--output", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        print("RESULT " + json.dumps(one_run(args)), flush=True)
        return 0
    if args.set is None:
        args.set = ["epochs=1"]
    import scale_data

    results = []
    for factor in args.factors:
        data = scale_data.make(Path(args.data), Path(args.data_out), factor)
        result = {"factor": factor, "train_rows": factor * 60_000, **run_child(args, data)}
        results.append(result)
        print(json.dumps(result, indent=1), file=sys.stderr, flush=True)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.png:
        plot(results, Path(args.png))
    for r in results:
        comps = ", ".join(f"{n} {c['seconds']:.0f} s/{c['peak_rss_gb']:.2f} GB" for n, c in r["components"].items()
                          if c["seconds"] >= 1)
        print(f"{r['factor']:>3}x {r['train_rows']:>9,} rows: wall {r['wall_seconds']:.0f} s, "
              f"peak {r['peak_rss_gb']:.2f} GB; {comps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
