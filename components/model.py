"""The Keras CNN, built from a few hyperparameters so configs and tests can size it.

Why tf_keras (Keras 2) and not Keras 3: TensorFlow Transform 1.21 sets TF_USE_LEGACY_KERAS and
its `transform_features_layer` is a tf_keras layer; the SavedModel we export wraps that layer
and this model in one graph, so both must come from the same Keras.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from pipeline.features import IMAGE_KEY, IMAGE_SIZE, NUM_CLASSES  # noqa: E402


@dataclasses.dataclass(frozen=True)
class HParams:
    """Model and optimisation settings; built from the Trainer's custom_config."""
    conv_filters: tuple[int, ...] = (32, 64)
    convs_per_block: int = 1
    dense_units: int = 128
    dropout: float = 0.3
    # Dropout after each conv block; early blocks overfit less than the dense head, hence half.
    conv_dropout: float = 0.15
    # Pool each block right after its last convolution, before batch norm and ReLU: max-pooling
    # commutes with ReLU and with a positively scaled BN, so the function class is nearly the
    # same, but BN and ReLU then run on a quarter of the activations (~25% less time per epoch
    # on CPU, measured in benchmarks/training_speed.py).
    pool_before_norm: bool = False
    augment: bool = False
    learning_rate: float = 2e-3
    label_smoothing: float = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "HParams":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in config.items() if k in names}
        if "conv_filters" in values:
            values["conv_filters"] = tuple(int(v) for v in values["conv_filters"])
        return cls(**values)


def build_model(hp: HParams = HParams(), steps_per_epoch: int | None = None,
                epochs: int | None = None) -> keras.Model:
    """CNN over the transformed `image` feature [N, 28, 28, 1] in [0, 1]; softmax over 10 classes.

    With steps_per_epoch and epochs the learning rate follows a cosine decay over the whole run,
    which converges more reliably than a constant rate in the few epochs a CPU budget allows.
    """
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name=IMAGE_KEY, dtype=tf.float32)
    x = inputs
    if hp.augment:
        # Active only in training: small shifts, as garments are not always centred.
        x = keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", name="shift")(x)
        x = keras.layers.RandomFlip("horizontal", name="flip")(x)
    for block, filters in enumerate(hp.conv_filters):
        for i in range(hp.convs_per_block):
            last = i == hp.convs_per_block - 1
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                    name=f"conv{block}_{i}")(x)
            if last and hp.pool_before_norm:
                x = keras.layers.MaxPooling2D(name=f"pool{block}")(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{block}_{i}")(x)
            x = keras.layers.ReLU()(x)
            if last and not hp.pool_before_norm:
                x = keras.layers.MaxPooling2D(name=f"pool{block}")(x)
        if hp.conv_dropout:
            x = keras.layers.Dropout(hp.conv_dropout)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(hp.dense_units, use_bias=False, name="features")(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU(name="embedding")(x)
    x = keras.layers.Dropout(hp.dropout)(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="fmnist_cnn")

    lr: Any = hp.learning_rate
    if steps_per_epoch and epochs:
        lr = keras.optimizers.schedules.CosineDecay(hp.learning_rate, steps_per_epoch * epochs,
                                                    alpha=0.02)
    if hp.label_smoothing:
        # Smoothing needs one-hot targets; the labels stay integers at the model's boundary.
        base = keras.losses.CategoricalCrossentropy(label_smoothing=hp.label_smoothing)

        def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
            y = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), NUM_CLASSES)
            return base(y, y_pred)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss,
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    return model
