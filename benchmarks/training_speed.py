"""Training speed side by side: the tutorials' plain Keras CNN vs. this project's model and recipe.

Both train in this one process, one after the other, on the same full training CSV and are scored
on the same 10,000 test rows after every epoch, so "time to 91.5% test accuracy" is measured the
same way for both. The baseline is the tutorial recipe verbatim: Conv2D(64,3,same)-MaxPool-
Conv2D(128,3,same)-MaxPool-Flatten-Dense(128)-Dropout(.25)-Dense(64)-Dropout(.25)-Dense(10),
Adam, batch 50, 10 epochs, 30% validation split. Ours is components.models' build_model with the
given preset's settings, trained as components/training/trainer.py does (10% validation, cosine decay,
early stopping with best weights).

The baseline and each preset are trained once per seed (default 3 seeds) and the medians are
reported, because the epoch at which a model first crosses 91.5% moves with the seed (and the
final accuracy by a few tenths); presets listed in `--one-seed` (none by default) are trained
with the first seed only. The ratio is median baseline time to 91.5% / median ours. Each model
is scored as served (the float32 copy, components/models/registry.py), with each class's recall
and with test-time flips beside it. All of it, 3 seeds each: ~1.5 hours on this 2-core machine.

    make bench-training      # = tools/with-stack python benchmarks/training_speed.py
"""
from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from benchmarks.common import ROOT, write_result
from components.models.registry import build_and_compile, float32_copy
from pipeline.config import load_config

TARGET = 0.915


def load_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rb") as f:
        f.readline()
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    return table[:, 1:].reshape(-1, 28, 28, 1).astype(np.float32) / 255.0, table[:, 0].astype(np.int64)


class TestAccuracyClock(keras.callbacks.Callback):
    """Scores the test set after each epoch; the clock excludes the scoring itself."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y = x, y
        self.train_seconds = 0.0
        self.curve: list[tuple[float, float]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.train_seconds += time.perf_counter() - self._t
        acc = float(np.mean(np.argmax(self.model.predict(self.x, batch_size=1000, verbose=0), 1) == self.y))
        self.curve.append((round(self.train_seconds, 1), round(acc, 4)))
        print(f"  epoch {epoch + 1}: {self.train_seconds:7.1f} s training, test accuracy {acc:.4f}",
              file=sys.stderr, flush=True)

    def time_to(self, target: float) -> float | None:
        return next((t for t, a in self.curve if a >= target), None)


def tutorial_baseline() -> keras.Model:
    model = keras.Sequential([
        keras.layers.Conv2D(64, 3, padding="same", activation="relu", input_shape=(28, 28, 1)),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(128, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.25),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.25),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def run_baseline(x, y, xt, yt, seed: int) -> dict:
    keras.utils.set_random_seed(seed)
    clock = TestAccuracyClock(xt, yt)
    start = time.perf_counter()
    tutorial_baseline().fit(x, y, batch_size=50, epochs=10, validation_split=0.3, callbacks=[clock],
                            verbose=0)
    return {"seed": seed, "wall_seconds": time.perf_counter() - start,
            "train_seconds": clock.train_seconds,
            "test_accuracy": clock.curve[-1][1], "seconds_to_target": clock.time_to(TARGET),
            "curve": clock.curve}


def run_ours(x, y, xt, yt, preset: str, overrides: dict | None = None) -> dict:
    cfg = load_config(preset, overrides=overrides).training
    keras.utils.set_random_seed(cfg.seed)
    k = max(2, round(1 / cfg.validation_fraction))
    val = np.arange(len(x)) % k == k - 1
    steps = -(-int((~val).sum()) // cfg.batch_size)
    model = build_and_compile(cfg, steps_per_epoch=steps, epochs=cfg.epochs)
    clock = TestAccuracyClock(xt, yt)
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", restore_best_weights=True,
                                         patience=cfg.early_stopping_patience)
    train = tf.data.Dataset.from_tensor_slices((x[~val], y[~val])).cache().shuffle(
        int((~val).sum()), seed=cfg.seed).batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)
    start = time.perf_counter()
    model.fit(train, validation_data=(x[val], y[val]), epochs=cfg.epochs, callbacks=[clock, stop], verbose=0)
    # Scored as it is served: the float32 copy the Trainer exports (the same model unless
    # `precision` is mixed), and with test-time flips (the mean of the image's and its mirror's
    # probabilities) to price them: a served flip doubles the model's work per image.
    served = float32_copy(model, cfg)
    probabilities = served.predict(xt, batch_size=1000, verbose=0)
    flipped = (probabilities + served.predict(xt[:, :, ::-1], batch_size=1000, verbose=0)) / 2
    return {"seed": cfg.seed, "overrides": overrides, "wall_seconds": time.perf_counter() - start,
            "train_seconds": clock.train_seconds, "epochs_run": len(clock.curve),
            **scores(probabilities, yt), "with_test_time_flip": scores(flipped, yt),
            "seconds_to_target": clock.time_to(TARGET), "curve": clock.curve}


def scores(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Test accuracy and each class's recall (Fashion-MNIST's weak class is Shirt, 6)."""
    predicted = np.argmax(probabilities, 1)
    return {"test_accuracy": round(float(np.mean(predicted == labels)), 4),
            "recall_per_class": [round(float(np.mean(predicted[labels == c] == c)), 4)
                                 for c in range(probabilities.shape[1])]}


def median_of(runs: list[dict], key: str) -> float | None:
    """Median over seeds; a run that never reached the target counts as slower than any that did."""
    m = float(np.median([r[key] if r[key] is not None else float("inf") for r in runs]))
    return None if m == float("inf") else round(m, 4)


def summarise(runs: list[dict]) -> dict:
    flips = [r["with_test_time_flip"]["test_accuracy"] for r in runs if "with_test_time_flip" in r]
    return {"runs": runs, "median_test_accuracy": median_of(runs, "test_accuracy"),
            "median_test_accuracy_with_flip": round(float(np.median(flips)), 4) if flips else None,
            "median_train_seconds": median_of(runs, "train_seconds"),
            "median_seconds_to_target": median_of(runs, "seconds_to_target")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    p.add_argument("--presets", default="default,fast")
    p.add_argument("--seeds", default="42,7,1234", help="comma-separated; each model trains once per seed")
    p.add_argument("--one-seed", default="", help="presets trained with the first seed only")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--set", action="append", default=[], help="config override for our runs, key=value")
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "training_speed.json"))
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    one_seed = set(filter(None, args.one_seed.split(",")))
    overrides = dict(kv.split("=", 1) for kv in args.set)
    x, y = load_csv(Path(args.data) / "fashion-mnist_train.csv.gz")
    xt, yt = load_csv(Path(args.data) / "fashion-mnist_test.csv.gz")
    results: dict = {"target": TARGET}
    # Interleaved by seed so a slow spell on the shared machine hits both sides alike.
    runs: dict[str, list[dict]] = {}
    for i, seed in enumerate(seeds):
        if not args.skip_baseline:
            print(f"tutorial baseline, seed {seed}", file=sys.stderr)
            runs.setdefault("baseline", []).append(run_baseline(x, y, xt, yt, seed))
        for preset in args.presets.split(","):
            if preset in one_seed and i > 0:
                continue
            print(f"ours ({preset}), seed {seed}", file=sys.stderr)
            runs.setdefault(preset, []).append(
                run_ours(x, y, xt, yt, preset, {**overrides, "seed": seed}))
    results.update({name: summarise(r) for name, r in runs.items()})
    base = results.get("baseline", {}).get("median_seconds_to_target")
    for preset in args.presets.split(","):
        ours = results[preset]["median_seconds_to_target"]
        results[preset]["speedup_to_target_vs_baseline"] = round(base / ours, 2) if base and ours else None
    write_result(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
