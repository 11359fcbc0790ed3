"""Trainer module: `run_fn` is what TFX's Trainer calls with the transformed data.

Training uses only the `train` split, streamed from Transform's shards (components/training/train_input.py:
memory does not grow with the data); a deterministic 1-in-k slice of it is held out for
validation (early stopping). The Trainer's eval split is the test split, used after training only
for the TensorBoard embedding projector -- it never influences the weights or the stopping epoch.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import FnArgs

from components.models.registry import build_and_compile, float32_copy
from components.training import export, projector, strategy, train_input, warm_start
from components.training.training_config import TrainingConfig
from components.training.training_loop import fit, input_datasets, make_reproducible
from components.training.tuner import apply_hyperparameters, values_from_config
from schema.contract import (
    HISTORY_FILE,
    IMAGE_KEY,
    SAVED_MODEL_FILE,
    TRAINING_CONFIG_FILE,
    TRANSFORMED_LABEL_KEY,
)

log = logging.getLogger(__name__)
# How long a non-chief replica waits, after its part of the collective export, for the chief's files.
CHIEF_EXPORT_TIMEOUT_SECONDS = 600


def load_split(patterns: list[str], tf_transform_output: tft.TFTransformOutput) -> tf.data.Dataset:
    """Unbatched (image, label) pairs from Transform's gzipped TFRecords, in file order (streamed)."""
    records = tf.data.TFRecordDataset(train_input.shard_files(patterns), compression_type="GZIP")
    return train_input.parse(records, tf_transform_output.transformed_feature_spec(), IMAGE_KEY,
                             TRANSFORMED_LABEL_KEY)


def training_rows(train_examples: int, files: list[str], settings: train_input.InputSettings
                  ) -> tuple[int, int]:
    """(training, validation) row counts without holding the data.

    From `train_examples` (the train split's num_examples in the statistics) when the pipeline
    passes it (non-zero), else from one streaming count of the records."""
    total = train_examples
    if total:
        log.info("train split: %d examples (from the statistics)", int(total))
    else:
        total = train_input.count_records(files, settings.read_parallelism)
        log.info("train split: %d examples (counted, streaming)", total)
    return train_input.split_sizes(int(total), settings.validation_every)


def _warm_start(model: keras.Model, fn_args: FnArgs, config: TrainingConfig, steps: int,
                dist: Any) -> tuple[keras.Model, int]:
    """From the served model's weights when the architecture matches (components/training/warm_start.py),
    with warm_start_epochs and a learning-rate schedule over that shorter run; else unchanged."""
    result = warm_start.check(model, fn_args.base_model)
    epochs = config.epochs
    if result.warm:
        epochs = config.warm_start_epochs
        with dist.scope():
            model = build_and_compile(config, steps_per_epoch=steps, epochs=epochs)
            warm_start.restore(model, fn_args.base_model)
    result.epochs = epochs
    log.info("%s (base model %s, %d epochs)", result.reason, result.base_model, epochs)
    if strategy.is_chief():   # the replicas share the output directories: one writer
        warm_start.write_record(result, fn_args.model_run_dir)
    return model, epochs


def run_fn(fn_args: FnArgs) -> None:
    """Train, keep the best validation epoch, export the SavedModel with serving signatures."""
    config = TrainingConfig.from_custom_config(fn_args.custom_config)
    # The Tuner's best values (`--set tune=true`), set over the config by their setting names.
    tuned = values_from_config(fn_args.hyperparameters)
    if tuned:
        config = apply_hyperparameters(config, tuned)
        log.info("hyperparameters from the Tuner: %s", tuned)
    # First: MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
    dist = strategy.choose_strategy()
    # The same seed on the same machine: bit-identical weights (components/training/training_loop.py).
    make_reproducible(config.seed)

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = tf_transform_output.transformed_feature_spec()
    settings = train_input.InputSettings.from_training(config)
    files = train_input.shard_files(fn_args.train_files)
    n_train, n_val = training_rows(config.train_examples, files, settings)
    log.info("training on ~%d examples, validating on ~%d (every %d-th row of each of %d shard(s))",
             n_train, n_val, settings.validation_every, len(files))

    global_batch, per_replica = strategy.replica_batches(config.batch_size, dist.num_replicas_in_sync)
    log.info("global batch %d over %d replica(s): %d per replica, learning rate %g (the rule in "
             "components/training/strategy.py, replica_batches)", global_batch, dist.num_replicas_in_sync, per_replica,
             config.learning_rate)
    steps = -(-n_train // global_batch)
    # Several workers: every worker reads the same files and keeps its share of the batches.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train, validation = input_datasets(config, files, spec, n_train, n_val, global_batch, options)
    with dist.scope():
        model = build_and_compile(config, steps_per_epoch=steps, epochs=config.epochs)
    epochs = config.epochs
    if config.warm_start:
        model, epochs = _warm_start(model, fn_args, config, steps, dist)
    model.summary(print_fn=log.info)

    history = fit(model, train, validation, epochs, config,
                  [keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch")])
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    if strategy.is_chief():
        with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, HISTORY_FILE), "w") as f:
            json.dump({k: [float(v) for v in vals] for k, vals in history.history.items()}, f)
        with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, TRAINING_CONFIG_FILE), "w") as f:
            json.dump({"config": config.to_custom_config(), "tuned": tuned}, f, indent=1)

    # What is exported and served computes in float32, whatever precision training used.
    model = float32_copy(model, config)
    # Every worker takes part in the projector's predict and in the export (both are collective
    # under MultiWorkerMirroredStrategy); only the chief's files are kept.
    scratch = os.path.join(fn_args.model_run_dir, f"worker-tmp-{os.getpid()}")
    if fn_args.eval_files and config.projector_examples:
        # The eval split is the test split: shown in the projector after training, never trained on.
        sample = load_split(fn_args.eval_files, tf_transform_output).take(config.projector_examples)
        images, labels = (np.stack(a) for a in zip(*sample.as_numpy_iterator()))
        projector.write_projector(model, images, labels, fn_args.model_run_dir if strategy.is_chief() else scratch)

    if strategy.is_chief():
        export.export_model(model, tf_transform_output, fn_args.serving_model_dir)
    else:
        export.export_model(model, tf_transform_output, os.path.join(scratch, "model"))
        tf.io.gfile.rmtree(scratch)
        # TFX's Trainer executor fails a replica whose run_fn returns before serving_model_dir
        # exists (tfx/components/trainer/executor.py: "run_fn failed to generate model"), and a
        # failed worker fails the TFJob or CustomJob: wait until the chief's export is there.
        wait_for_export(fn_args.serving_model_dir)
    log.info("exported SavedModel to %s", fn_args.serving_model_dir)


def wait_for_export(serving_model_dir: str, timeout_seconds: float = CHIEF_EXPORT_TIMEOUT_SECONDS) -> None:
    """Block until the chief's SavedModel is complete in `serving_model_dir` (shared storage)."""
    marker = os.path.join(serving_model_dir, SAVED_MODEL_FILE)
    deadline = time.monotonic() + timeout_seconds
    while not tf.io.gfile.exists(marker):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the chief exported nothing to {serving_model_dir} within {timeout_seconds:.0f} s")
        time.sleep(1)
