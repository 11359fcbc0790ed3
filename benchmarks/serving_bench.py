"""Serving benchmark as users run it: the model server in its own process (`python -m serving`,
what `fmnist serve` runs, with TF Serving's flags), clients in this one over loopback gRPC,
batching off and on -- next to the same signature called in-process, all in one run.

    make bench-serving     # = tools/with-stack python benchmarks/serving_bench.py

In-process references: `tf.saved_model.load(...).signatures[...]` (a TF2 concrete function called
eagerly) and the server's own session-based path (`serving.savedmodel.LoadedVersion`) without
gRPC. Figures: p50/p99 latency of one 1-image Predict (sequential calls), and images/s with 8
concurrent clients sending batches of 1 and of 64 images. Each figure is the median of --repeat
rounds; fresh server processes per round.

Latency is measured side by side: the four modes take turns in blocks of --block calls (each
block after 3 untimed calls, so every mode is timed in its own steady state), so a change in the
machine's load hits all of them alike; the gRPC/in-process ratio is taken within each round, and
its median reported. --session-parallelism N gives TensorFlow N threads on both sides alike (this
process: tf.config.threading; the server: TF Serving's --tensorflow_session_parallelism).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def latest_model(base: Path) -> Path:
    versions = sorted((int(p.name), p) for p in base.iterdir() if p.name.isdigit()) if base.exists() else []
    if not versions:
        raise SystemExit(f"no model version under {base}; run `make run` first (or pass --model-dir)")
    return versions[-1][1]


def percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return times[len(times) // 2] * 1000, times[max(int(len(times) * 0.99) - 1, 0)] * 1000


def interleaved_latency(calls: dict[str, Callable[[], object]], n: int, block: int, untimed: int = 3
                        ) -> dict[str, tuple[float, float]]:
    """p50/p99 (ms) of n sequential calls per mode, the modes taking turns in blocks."""
    times: dict[str, list[float]] = {m: [] for m in calls}
    while any(len(t) < n for t in times.values()):
        for mode, call in calls.items():
            for _ in range(untimed):
                call()
            for _ in range(min(block, n - len(times[mode]))):
                t = time.perf_counter()
                call()
                times[mode].append(time.perf_counter() - t)
    return {m: percentiles(t) for m, t in times.items()}


def throughput(make_call, batch: int, clients: int, seconds: float) -> float:
    stop = threading.Event()
    counts = [0] * clients

    def worker(i: int) -> None:
        call = make_call()
        while not stop.is_set():
            call()
            counts[i] += batch

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", help="a SavedModel version directory (default: newest sample push)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--calls", type=int, default=200, help="sequential calls for latency")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput round")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--block", type=int, default=20, help="latency: calls per mode per turn")
    p.add_argument("--session-parallelism", type=int, default=0,
                   help="TensorFlow threads in this process and the server alike (0 = TensorFlow's defaults)")
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "serving.json"))
    args = p.parse_args()

    import shutil
    import socket
    import subprocess
    import tempfile

    import tensorflow as tf

    threads = args.session_parallelism
    session_config = None
    if threads > 0:  # before anything runs: the thread pools are made once per process
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        session_config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                                  inter_op_parallelism_threads=threads)

    from serving.client import ServingClient
    from serving.savedmodel import LoadedVersion

    model_dir = Path(args.model_dir) if args.model_dir else latest_model(ROOT / "outputs/sample/serving/fmnist")
    work = Path(tempfile.mkdtemp(prefix="fmnist-serving-bench-"))
    base = work / "fmnist"
    shutil.copytree(model_dir, base / "1")
    (work / "batching.config").write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 2000 }\n")
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, 28, 28)).astype(np.float32)
    many = rng.integers(0, 256, (64, 28, 28)).astype(np.float32)

    fn = tf.saved_model.load(str(model_dir)).signatures["serving_images"]
    session_model = LoadedVersion("fmnist", 1, str(model_dir), session_config)
    session_sig = session_model.signatures["serving_images"]
    outputs = sorted(session_sig.outputs)

    def start_server(batching: bool) -> tuple[subprocess.Popen, str]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "serving", f"--port={port}", "--rest_api_port=0", "--model_name=fmnist",
               f"--model_base_path={base}"]
        if batching:
            cmd += ["--enable_batching", f"--batching_parameters_file={work / 'batching.config'}"]
        if threads > 0:
            cmd.append(f"--tensorflow_session_parallelism={threads}")
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return proc, f"127.0.0.1:{port}"

    def wait_until_up(proc: subprocess.Popen, target: str) -> None:
        client = ServingClient(target, timeout=5)
        deadline = time.monotonic() + 300
        while True:
            try:
                client.predict_images(one)
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"server did not come up: {' '.join(proc.args)}")
                time.sleep(0.5)
        client.close()

    modes = {"in-process, tf.saved_model.load": "eager", "in-process, session (serving/ without gRPC)": "session",
             "gRPC to its own process, batching off": "off", "gRPC to its own process, batching on": "on"}
    rounds: dict[str, list[dict]] = {m: [] for m in modes}
    ratios: list[float] = []
    for r in range(args.repeat):
        servers = {kind: start_server(kind == "on") for kind in ("off", "on")}  # both load at once
        for proc, target in servers.values():
            wait_until_up(proc, target)

        def make_call(kind: str, x: np.ndarray) -> Callable[[], object]:
            if kind == "eager":
                return lambda: fn(images=tf.constant(x))
            if kind == "session":
                return lambda: session_model.run(session_sig, {"images": x}, outputs)
            client = ServingClient(servers[kind][1], timeout=60)  # one channel per client, reused
            return lambda: client.predict_images(x)

        lat = interleaved_latency({m: make_call(k, one) for m, k in modes.items()}, args.calls, args.block)
        for mode, kind in modes.items():
            rounds[mode].append({
                "p50_ms": lat[mode][0], "p99_ms": lat[mode][1],
                "batch1_images_per_s": throughput(lambda: make_call(kind, one), 1, args.clients, args.seconds),
                "batch64_images_per_s": throughput(lambda: make_call(kind, many), 64, args.clients, args.seconds),
            })
            print(f"round {r + 1} {mode}: {json.dumps({k: round(v, 2) for k, v in rounds[mode][-1].items()})}",
                  file=sys.stderr, flush=True)
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=60)
        ratios.append(lat["gRPC to its own process, batching off"][0] / lat["in-process, tf.saved_model.load"][0])
        print(f"round {r + 1} gRPC p50 / in-process p50, side by side: {ratios[-1]:.2f}x", file=sys.stderr,
              flush=True)
    medians = {m: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for m, rs in rounds.items()}
    ref = medians["in-process, tf.saved_model.load"]
    report = {"model_dir": str(model_dir), "repeat": args.repeat, "clients": args.clients,
              "calls": args.calls, "block": args.block, "session_parallelism": threads,
              "grpc_p50_over_in_process_p50_per_round": ratios,
              "grpc_p50_over_in_process_p50_median": statistics.median(ratios),
              "medians": medians,
              "ratios_vs_in_process": {m: {k: v / ref[k] for k, v in med.items()} for m, med in medians.items()},
              "rounds": rounds}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))
    print("| mode | p50 1 image (ms) | p99 1 image (ms) | 8 clients, batch 1 (img/s) | 8 clients, batch 64 (img/s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for m, med in medians.items():
        print(f"| {m} | {med['p50_ms']:.2f} | {med['p99_ms']:.2f} | {med['batch1_images_per_s']:.0f} "
              f"| {med['batch64_images_per_s']:.0f} |")
    print(f"gRPC p50 one image / in-process (tf.saved_model.load) p50, side by side per round: "
          f"{', '.join(f'{x:.2f}x' for x in ratios)}; median {statistics.median(ratios):.2f}x "
          f"(session parallelism: {threads or 'TensorFlow defaults'})")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
