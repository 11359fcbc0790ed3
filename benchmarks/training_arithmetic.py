"""The arithmetic that bounds what 30 minutes of training can reach on this machine.

Three figures, one process:

* the machine's peak: FLOP/s of a 2048x2048 matmul in float32 and in bfloat16 (TensorFlow's own
  kernels, i.e. oneDNN on a CPU), median of --repeats;
* each preset's model: multiply-adds per image (forward; counted from the Keras layers' shapes:
  convolutions and dense layers, the rest is elementwise), and training FLOPs per epoch of the
  training split (3 x forward: forward, and the two backward products);
* each preset's seconds per epoch in float32 and in mixed_bfloat16 (random images of
  Fashion-MNIST's shape from memory, so the figure is the compute's, not the input's), the runs
  alternating in one process so a slow spell on the shared machine hits all alike; the first fit
  of each is a warm-up (tracing), not counted; the achieved FLOP/s follows.

Presets too slow to time here (--count-only, default `gpu`) are only counted.

    tools/with-stack python benchmarks/training_arithmetic.py [--presets default,fast] [--count-only gpu]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras

from benchmarks.common import ROOT, write_result
from components.models.registry import build_and_compile
from pipeline.config import load_config

TRAIN_ROWS = 54_000   # the training split less its 1-in-10 validation slice


def matmul_flops(dtype: tf.DType, size: int = 2048, calls: int = 10) -> float:
    a = tf.cast(tf.random.stateless_normal((size, size), seed=(1, 2)), dtype)
    f = tf.function(lambda: tf.matmul(a, a))
    f().numpy()
    start = time.perf_counter()
    for _ in range(calls):
        result = f()
    result.numpy()
    return 2 * size ** 3 * calls / (time.perf_counter() - start)


def forward_macs(model: keras.Model) -> int:
    """Multiply-adds of one image's forward pass through the convolutions and dense layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output_shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * layer.input_shape[-1] * c_out
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input_shape[-1] * layer.units
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="default,fast")
    p.add_argument("--count-only", default="gpu", help="presets whose multiply-adds are counted, not timed")
    p.add_argument("--rows", type=int, default=6400, help="random images per timed epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "training_arithmetic.json"))
    args = p.parse_args()
    peaks = {name: statistics.median(matmul_flops(dtype) for _ in range(args.repeats))
             for name, dtype in (("float32", tf.float32), ("bfloat16", tf.bfloat16))}
    print(f"matmul peak: {peaks['float32'] / 1e9:.0f} GFLOP/s float32, {peaks['bfloat16'] / 1e9:.0f} bfloat16",
          file=sys.stderr)
    rng = np.random.default_rng(0)
    x = rng.random((args.rows, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.rows)
    runs: dict[tuple[str, str], tuple[keras.Model, tf.data.Dataset]] = {}
    models: dict[str, dict] = {}
    for preset in args.presets.split(","):
        for precision in ("float32", "mixed_bfloat16"):
            config = load_config(preset, overrides={"precision": precision}).training
            model = build_and_compile(config, steps_per_epoch=10, epochs=1)
            data = tf.data.Dataset.from_tensor_slices((x, y)).batch(config.batch_size).cache()
            model.fit(data, epochs=1, verbose=0)   # warm-up: tracing
            runs[preset, precision] = model, data
        macs = forward_macs(runs[preset, "float32"][0])
        models[preset] = {"forward_macs_per_image": macs, "training_flops_per_epoch": 3 * 2 * macs * TRAIN_ROWS}
    for preset in filter(None, args.count_only.split(",")):
        macs = forward_macs(build_and_compile(load_config(preset).training, steps_per_epoch=10, epochs=1))
        models[preset] = {"forward_macs_per_image": macs, "training_flops_per_epoch": 3 * 2 * macs * TRAIN_ROWS}
    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for _ in range(args.repeats):
        for key, (model, data) in runs.items():
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            seconds[key].append((time.perf_counter() - start) * TRAIN_ROWS / args.rows)
    for (preset, precision), values in seconds.items():
        epoch = statistics.median(values)
        models[preset][precision] = {"seconds_per_epoch": round(epoch, 1), "runs": [round(v, 1) for v in values],
                                     "achieved_gflops": round(models[preset]["training_flops_per_epoch"] / epoch / 1e9)}
        print(f"{preset} {precision}: {epoch:.1f} s per epoch, "
              f"{models[preset]['training_flops_per_epoch'] / epoch / 1e9:.0f} GFLOP/s", file=sys.stderr)
    write_result(args.json, {"matmul_peak_gflops": {k: round(v / 1e9) for k, v in peaks.items()},
                             "train_rows": TRAIN_ROWS, "presets": models})
    return 0


if __name__ == "__main__":
    sys.exit(main())
