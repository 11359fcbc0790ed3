"""Serving benchmark: Predict latency and throughput over loopback gRPC, batching off and on, next
to the same SavedModel signature called in-process, all in one run.

    make bench-serving     # = tools/with-stack python benchmarks/serving_bench.py

Figures: p50/p99 latency of one 1-image Predict (sequential calls), and images/s with 8 concurrent
clients sending batches of 1 and of 64 images. Each figure is the median of --repeat rounds.
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


def latency(call, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1000, times[int(len(times) * 0.99) - 1] * 1000


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
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "serving.json"))
    args = p.parse_args()

    import shutil
    import tempfile

    import tensorflow as tf

    from serving.batching import BatchingParameters
    from serving.client import ServingClient
    from serving.model_manager import ModelConfig
    from serving.server import ModelServer

    model_dir = Path(args.model_dir) if args.model_dir else latest_model(ROOT / "outputs/sample/serving/fmnist")
    base = Path(tempfile.mkdtemp(prefix="fmnist-serving-bench-")) / "fmnist"
    shutil.copytree(model_dir, base / "1")
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, 28, 28)).astype(np.float32)
    many = rng.integers(0, 256, (64, 28, 28)).astype(np.float32)

    fn = tf.saved_model.load(str(model_dir)).signatures["serving_images"]
    modes = {"in-process": None, "gRPC, batching off": "off", "gRPC, batching on": "on"}
    rounds: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(args.repeat):
        for mode, batching in modes.items():
            if batching is None:
                def make_call(x):
                    return lambda: fn(images=tf.constant(x))
                server = None
            else:
                params = BatchingParameters(max_batch_size=64, batch_timeout_micros=2000) if batching == "on" else None
                server = ModelServer([ModelConfig("fmnist", str(base))], port=0, rest_port=None,
                                     batching=params).start()

                def make_call(x, target=server.target):
                    client = ServingClient(target, timeout=60)
                    return lambda: client.predict_images(x)
            p50, p99 = latency(make_call(one), args.calls)
            rounds[mode].append({
                "p50_ms": p50, "p99_ms": p99,
                "batch1_images_per_s": throughput(lambda: make_call(one), 1, args.clients, args.seconds),
                "batch64_images_per_s": throughput(lambda: make_call(many), 64, args.clients, args.seconds),
            })
            if server:
                server.stop(grace=1)
            print(f"round {r + 1} {mode}: {json.dumps({k: round(v, 2) for k, v in rounds[mode][-1].items()})}",
                  file=sys.stderr, flush=True)
    medians = {m: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for m, rs in rounds.items()}
    ref = medians["in-process"]
    report = {"model_dir": str(model_dir), "repeat": args.repeat, "clients": args.clients,
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
    shutil.rmtree(base.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
