"""Serving benchmark as users run it: the model server in its own process (`python -m serving`,
what `fmnist serve` runs, with TF Serving's flags), clients in this one over loopback gRPC,
batching off and on -- next to the same signature called in-process, all in one run.

    make bench-serving     # = tools/with-stack python benchmarks/serving_bench.py

In-process references: `tf.saved_model.load(...).signatures[...]` (a TF2 concrete function called
eagerly) and the server's own session-based path (`serving.savedmodel.LoadedVersion`) without
gRPC. Figures: p50/p99 latency of one 1-image Predict (sequential calls), and images/s with 8
concurrent clients sending batches of 1 and of 64 images. Each figure is the median of --repeat
rounds; a fresh server process per round.
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
    import socket
    import subprocess
    import tempfile

    import tensorflow as tf

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
    session_model = LoadedVersion("fmnist", 1, str(model_dir))
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
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = f"127.0.0.1:{port}"
        client = ServingClient(target, timeout=5)
        deadline = time.monotonic() + 300
        while True:
            try:
                client.predict_images(one)
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"server did not come up: {' '.join(cmd)}")
                time.sleep(0.5)
        client.close()
        return proc, target

    modes = {"in-process, tf.saved_model.load": "eager", "in-process, session (serving/ without gRPC)": "session",
             "gRPC to its own process, batching off": "off", "gRPC to its own process, batching on": "on"}
    rounds: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(args.repeat):
        for mode, kind in modes.items():
            proc = None
            if kind == "eager":
                def make_call(x):
                    return lambda: fn(images=tf.constant(x))
            elif kind == "session":
                def make_call(x):
                    return lambda: session_model.run(session_sig, {"images": x}, outputs)
            else:
                proc, target = start_server(kind == "on")

                def make_call(x, target=target):
                    client = ServingClient(target, timeout=60)
                    return lambda: client.predict_images(x)
            p50, p99 = latency(make_call(one), args.calls)
            rounds[mode].append({
                "p50_ms": p50, "p99_ms": p99,
                "batch1_images_per_s": throughput(lambda: make_call(one), 1, args.clients, args.seconds),
                "batch64_images_per_s": throughput(lambda: make_call(many), 64, args.clients, args.seconds),
            })
            if proc:
                proc.terminate()
                proc.wait(timeout=60)
            print(f"round {r + 1} {mode}: {json.dumps({k: round(v, 2) for k, v in rounds[mode][-1].items()})}",
                  file=sys.stderr, flush=True)
    medians = {m: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for m, rs in rounds.items()}
    ref = medians["in-process, tf.saved_model.load"]
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
    print(f"gRPC p50 one image / in-process (tf.saved_model.load) p50: "
          f"{medians['gRPC to its own process, batching off']['p50_ms'] / ref['p50_ms']:.2f}x")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
