"""What op determinism costs in training speed: the same fit with and without it, median and fastest of 3.

The model and recipe are a preset's (default: `default`, the full-data CNN), trained on random
images of Fashion-MNIST's shape from memory, so the figure is the compute's, not the input's. The
runs alternate (off, on, off, on, ...) in one process so a slow spell on the shared machine hits
both alike; the first fit of each kind is a warm-up (graph tracing) and not counted.

    tools/with-stack python benchmarks/determinism_cost.py [--preset default] [--rows 6400]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tensorflow.python.framework import config as tf_config

from components.models.registry import build_and_compile
from pipeline.config import load_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--rows", type=int, default=6400)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    config = load_config(args.preset).training
    rng = np.random.default_rng(0)
    x = rng.random((args.rows, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.rows)
    steps = -(-args.rows // config.batch_size)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for run in range(args.repeats + 1):
        for deterministic in (False, True):
            if deterministic:
                tf_config.enable_op_determinism()
            else:
                tf_config.disable_op_determinism()
            keras.utils.set_random_seed(config.seed)
            model = build_and_compile(config, steps_per_epoch=steps, epochs=1)
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(config.batch_size)
            model.fit(ds.take(2), epochs=1, verbose=0)          # trace outside the clock
            start = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            elapsed = time.perf_counter() - start
            if run:
                seconds[deterministic].append(elapsed)
            print(f"run {run} {'deterministic' if deterministic else 'default      '}: "
                  f"{steps / elapsed:6.2f} steps/s ({elapsed:.2f} s)", flush=True)
    # The median, and the fastest run: on a shared machine the fastest is the least disturbed.
    for name, pick in (("median", statistics.median), ("fastest", min)):
        off, on = pick(seconds[False]), pick(seconds[True])
        print(f"preset {args.preset}, batch {config.batch_size}, {steps} steps, {name} of {args.repeats}: "
              f"{steps / off:.2f} steps/s without op determinism, {steps / on:.2f} with "
              f"({(on / off - 1) * 100:+.1f}% time)")


if __name__ == "__main__":
    main()
