"""Compilation shared by every architecture: optimizer, learning-rate schedule, loss, metric.

Kept apart from building so an architecture is only its layers, and a change to the training recipe
(a schedule, the loss) reaches every architecture at once. The metric carries the contract's name
(TRAINING_ACCURACY_METRIC): early stopping, the history file and the report read it by that name.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from components.training.training_config import TrainingConfig
from schema.contract import NUM_CLASSES, TRAINING_ACCURACY_METRIC


def compile_model(model: keras.Model, config: TrainingConfig, steps_per_epoch: int | None = None,
                  epochs: int | None = None) -> keras.Model:
    """Compile `model` (in place; returned for chaining) with Adam at config.learning_rate.

    With steps_per_epoch and epochs the learning rate follows a cosine decay over the whole run,
    which converges more reliably than a constant rate in the few epochs a CPU budget allows.
    With them and config.ema_momentum, Adam keeps a moving average of the weights (Keras's
    `use_ema`) and writes it into the model at the last step of every epoch, so validation,
    early stopping (and the best epoch it restores), checkpoints and the exported model all see
    the averaged weights, with no callback to keep in step; training goes on from the average.
    Without a known epoch length there is no averaging: Keras would write the average only after
    fit, where early stopping's restore would overwrite it.
    Under a distribution strategy call this inside its scope, like the build (the optimizer's
    variables are created here)."""
    lr: Any = config.learning_rate
    if steps_per_epoch and epochs:
        lr = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps_per_epoch * epochs, alpha=0.02)
    if config.label_smoothing:
        # Smoothing needs one-hot targets; the labels stay integers at the model's boundary.
        base = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)

        def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
            y = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), NUM_CLASSES)
            return base(y, y_pred)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    averaging: dict[str, Any] = {}
    if config.ema_momentum and steps_per_epoch and epochs:
        averaging = {"use_ema": True, "ema_momentum": config.ema_momentum,
                     "ema_overwrite_frequency": steps_per_epoch}
    model.compile(optimizer=keras.optimizers.Adam(lr, **averaging), loss=loss,
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name=TRAINING_ACCURACY_METRIC)])
    return model

