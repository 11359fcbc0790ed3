"""`cnn`: the project's convolutional network, sized by its config group (CnnConfig).

Blocks of 3x3 convolutions with batch norm and ReLU, max-pooled once per block, then one dense
layer whose ReLU output is the embedding, dropout and the softmax. Layer names (conv<block>_<i>,
bn<block>_<i>, pool<block>) are stable: kubeflow/gpu_check.py finds the first convolution by name.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from components.models.configs import CnnConfig
from schema.contract import EMBEDDING_LAYER, NUM_CLASSES, PROBABILITIES_OUTPUT


def build_cnn(x: tf.Tensor, config: CnnConfig) -> tf.Tensor:
    """The class probabilities from the image tensor x [N, 28, 28, 1] (after any augmentation)."""
    for block, filters in enumerate(config.conv_filters):
        for i in range(config.convs_per_block):
            last = i == config.convs_per_block - 1
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{block}_{i}")(x)
            if last and config.pool_before_norm:
                x = keras.layers.MaxPooling2D(name=f"pool{block}")(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{block}_{i}")(x)
            x = keras.layers.ReLU()(x)
            if last and not config.pool_before_norm:
                x = keras.layers.MaxPooling2D(name=f"pool{block}")(x)
        if config.conv_dropout:
            x = keras.layers.Dropout(config.conv_dropout)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(config.dense_units, use_bias=False, name="features")(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU(name=EMBEDDING_LAYER)(x)
    x = keras.layers.Dropout(config.dropout)(x)
    return keras.layers.Dense(NUM_CLASSES, activation="softmax", name=PROBABILITIES_OUTPUT,
                              dtype="float32")(x)  # float32 under mixed precision too
