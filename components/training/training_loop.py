"""The training loop run_fn runs, apart from the TFX plumbing, so a test can run it as run_fn does.

`make_reproducible` seeds every generator training draws from and turns on TensorFlow's op
determinism; `input_datasets` is the training and validation input (components/training/train_input.py);
`fit` trains with early stopping on the validation slice, keeping the best epoch's weights.

Reproducible means: the same seed on the same machine (same TensorFlow build, same CPU/GPU, same
thread counts) gives bit-identical weights. Across machines the kernels differ (vector widths,
oneDNN's code paths, GPU models), so the same seed lands on a different, equally good model.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import tensorflow as tf
import tf_keras as keras

from components.training import train_input
from components.training.training_config import TrainingConfig
from schema.contract import IMAGE_KEY, TRAINING_ACCURACY_METRIC, TRANSFORMED_LABEL_KEY


def make_reproducible(seed: int) -> None:
    """Seed Python's, NumPy's and TensorFlow's generators (weights, dropout, augmentation, the
    shuffle) and make every op deterministic: floating-point reductions in a fixed order, tf.data's
    parallel maps in order. Costs a little speed (BENCHMARKS.md, "Reproducibility")."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def input_datasets(config: TrainingConfig, files: list[str], feature_spec: Mapping[str, Any], n_train: int,
                   n_val: int, global_batch: int, options: tf.data.Options | None = None
                   ) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(training batches, validation batches) from Transform's shards: the held-out validation slice
    is every k-th row (components/training/train_input.py), the same rows early stopping and the Tuner use."""
    settings = train_input.InputSettings.from_training(config)
    train = train_input.training_dataset(files, feature_spec, IMAGE_KEY, TRANSFORMED_LABEL_KEY, n_train,
                                         settings, global_batch)
    validation = train_input.validation_dataset(files, feature_spec, IMAGE_KEY, TRANSFORMED_LABEL_KEY, n_val,
                                                settings)
    if options is not None:
        train, validation = train.with_options(options), validation.with_options(options)
    return train, validation


def fit(model: keras.Model, train: tf.data.Dataset, validation: tf.data.Dataset, epochs: int,
        config: TrainingConfig, callbacks: Iterable[keras.callbacks.Callback] = (),
        verbose: int = 2) -> keras.callbacks.History:
    """Train with early stopping on the validation slice's accuracy; the best epoch's weights stay."""
    stopping = keras.callbacks.EarlyStopping(monitor=f"val_{TRAINING_ACCURACY_METRIC}", mode="max",
                                             restore_best_weights=True,
                                             patience=config.early_stopping_patience)
    return model.fit(train, validation_data=validation, epochs=epochs, callbacks=[*callbacks, stopping],
                     verbose=verbose)
