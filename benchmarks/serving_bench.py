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
import sys

import numpy as np

from benchmarks.common import (
    ROOT,
    latency,
    medians as median_rounds,
    print_round,
    served_copy,
    start_model_server,
    stop,
    throughput,
    write_result,
)


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
    import subprocess

    import tensorflow as tf

    from serving.client import ServingClient
    from serving.savedmodel import LoadedVersion

    model_dir, work, base = served_copy(args.model_dir, "serving")
    (work / "batching.config").write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 2000 }\n")
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, 28, 28)).astype(np.float32)
    many = rng.integers(0, 256, (64, 28, 28)).astype(np.float32)

    fn = tf.saved_model.load(str(model_dir)).signatures["serving_images"]
    session_model = LoadedVersion("fmnist", 1, str(model_dir))
    session_sig = session_model.signatures["serving_images"]
    outputs = sorted(session_sig.outputs)

    def start_server(batching: bool) -> tuple[subprocess.Popen, str]:
        flags = ["--model_name=fmnist", f"--model_base_path={base}"]
        if batching:
            flags += ["--enable_batching", f"--batching_parameters_file={work / 'batching.config'}"]
        return start_model_server(flags, lambda client: client.predict_images(one) is not None)

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
            stop(proc)
            print_round(f"round {r + 1} {mode}", rounds[mode][-1], digits=2)
    medians = median_rounds(rounds)
    ref = medians["in-process, tf.saved_model.load"]
    report = {"model_dir": str(model_dir), "repeat": args.repeat, "clients": args.clients,
              "medians": medians,
              "ratios_vs_in_process": {m: {k: v / ref[k] for k, v in med.items()} for m, med in medians.items()},
              "rounds": rounds}
    write_result(args.json, report, echo=False)
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
