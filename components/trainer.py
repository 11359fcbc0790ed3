"""Trainer module: `run_fn` is what TFX's Trainer calls with the transformed data.

Training uses only the `train` split; a deterministic 1-in-k slice of it is held out for
validation (early stopping). The Trainer's eval split is the test split, used after training only
for the TensorBoard embedding projector -- it never influences the weights or the stopping epoch.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras as keras  # noqa: E402
from tfx.components.trainer.fn_args_utils import FnArgs  # noqa: E402

from components import export, projector, strategy  # noqa: E402
from components.model import HParams, build_model  # noqa: E402
from pipeline.features import IMAGE_KEY, TRANSFORMED_LABEL_KEY  # noqa: E402

log = logging.getLogger(__name__)

HISTORY_FILE = "history.json"


def _file_list(patterns: list[str]) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        files.extend(sorted(tf.io.gfile.glob(pattern)))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {patterns}")
    return files


def load_split(patterns: list[str], tf_transform_output: tft.TFTransformOutput) -> tf.data.Dataset:
    """Unbatched (image, label) pairs from Transform's gzipped TFRecords, in file order."""
    spec = tf_transform_output.transformed_feature_spec()
    spec = {IMAGE_KEY: spec[IMAGE_KEY], TRANSFORMED_LABEL_KEY: spec[TRANSFORMED_LABEL_KEY]}
    records = tf.data.TFRecordDataset(_file_list(patterns), compression_type="GZIP",
                                      num_parallel_reads=1)

    def parse(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        features = tf.io.parse_example(batch, spec)
        return features[IMAGE_KEY], tf.reshape(features[TRANSFORMED_LABEL_KEY], [-1])

    return records.batch(1024).map(parse, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def split_train_validation(ds: tf.data.Dataset, validation_fraction: float
                           ) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Every k-th example (k = round(1/fraction)) to validation; the same rows on every run."""
    k = max(2, round(1.0 / validation_fraction))
    indexed = ds.enumerate()
    pick = lambda keep: lambda i, xy: tf.equal(i % k, k - 1) == keep  # noqa: E731
    strip = lambda i, xy: xy  # noqa: E731
    return indexed.filter(pick(False)).map(strip), indexed.filter(pick(True)).map(strip)


def count(ds: tf.data.Dataset) -> int:
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def run_fn(fn_args: FnArgs) -> None:
    """Train, keep the best validation epoch, export the SavedModel with serving signatures."""
    cfg: dict[str, Any] = dict(fn_args.custom_config or {})
    epochs = int(cfg.get("epochs", 10))
    batch_size = int(cfg.get("batch_size", 128))
    seed = int(cfg.get("seed", 42))
    hp = HParams.from_config(cfg)
    # First: MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
    dist = strategy.choose_strategy()
    keras.utils.set_random_seed(seed)

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    everything = load_split(fn_args.train_files, tf_transform_output).cache()
    train, validation = split_train_validation(everything, float(cfg.get("validation_fraction", 0.1)))
    n_train, n_val = count(train), count(validation)
    log.info("training on %d examples, validating on %d", n_train, n_val)

    global_batch = batch_size * dist.num_replicas_in_sync
    steps = -(-n_train // global_batch)
    # Several workers: every worker reads the same files and keeps its share of the batches.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train = (train.shuffle(n_train, seed=seed, reshuffle_each_iteration=True)
             .batch(global_batch).prefetch(tf.data.AUTOTUNE).with_options(options))
    validation = validation.batch(1024).cache().prefetch(tf.data.AUTOTUNE).with_options(options)
    with dist.scope():
        model = build_model(hp, steps_per_epoch=steps, epochs=epochs)
    model.summary(print_fn=log.info)

    callbacks = [
        keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", restore_best_weights=True,
                                      patience=int(cfg.get("early_stopping_patience", 3))),
    ]
    history = model.fit(train, validation_data=validation, epochs=epochs, callbacks=callbacks,
                        verbose=2)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, HISTORY_FILE), "w") as f:
        json.dump({k: [float(v) for v in vals] for k, vals in history.history.items()}, f)

    # Every worker takes part in the projector's predict and in the export (both are collective
    # under MultiWorkerMirroredStrategy); only the chief's files are kept.
    scratch = os.path.join(fn_args.model_run_dir, f"worker-tmp-{os.getpid()}")
    if fn_args.eval_files:
        # The eval split is the test split: shown in the projector after training, never trained on.
        sample = load_split(fn_args.eval_files, tf_transform_output).take(int(cfg.get("projector_examples", 2000)))
        images, labels = (np.stack(a) for a in zip(*sample.as_numpy_iterator()))
        projector.write_projector(model, images, labels, fn_args.model_run_dir if strategy.is_chief() else scratch)

    if strategy.is_chief():
        export.export_model(model, tf_transform_output, fn_args.serving_model_dir)
    else:
        export.export_model(model, tf_transform_output, os.path.join(scratch, "model"))
        tf.io.gfile.rmtree(scratch)
    log.info("exported SavedModel to %s", fn_args.serving_model_dir)
