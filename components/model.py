"""The Keras CNN, sized by the model fields of the TrainingConfig so configs and tests can size it.

Why tf_keras (Keras 2) and not Keras 3: TensorFlow Transform 1.21's `transform_features_layer` is a
tf_keras layer; the SavedModel we export wraps that layer and this model in one graph, so both must
come from the same Keras (components/__init__.py).
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from components.training_config import TrainingConfig
from schema.contract import IMAGE_KEY, IMAGE_SIZE, NUM_CLASSES, PROBABILITIES_OUTPUT


def build_model(hp: TrainingConfig = TrainingConfig(), steps_per_epoch: int | None = None,
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
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name=PROBABILITIES_OUTPUT)(x)
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
