"""`resnet`: a small pre-activation ResNet for 28x28x1 images, sized by ResNetConfig.

Pre-activation (BN -> ReLU -> conv in each branch, He et al. 2016) keeps the shortcut an identity
all the way, which trains stably without a warm-up at the Adam learning rates the CNN uses. A stage
after the first halves the image with a stride-2 convolution and doubles the filters; its first
block's shortcut is a 1x1 stride-2 projection of the pre-activated input. Global average pooling
of the last stage is the embedding (width * 2**(stages-1) values), then dropout and the softmax.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from components.models.configs import ResNetConfig
from schema.contract import EMBEDDING_LAYER, NUM_CLASSES, PROBABILITIES_OUTPUT


def _conv(filters: int, kernel: int, strides: int, name: str) -> keras.layers.Conv2D:
    # No bias: every convolution here feeds a batch norm (in the next block's pre-activation or
    # the final one), whose offset does the bias' job.
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                               kernel_initializer="he_normal", name=name)


def _block(x: tf.Tensor, filters: int, strides: int, dropout: float, name: str) -> tf.Tensor:
    """One pre-activation residual block: x + conv(relu(bn(conv(relu(bn(x))))))."""
    pre = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(x)
    pre = keras.layers.ReLU(name=f"{name}_relu1")(pre)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides, f"{name}_project")(pre)
    y = _conv(filters, 3, strides, f"{name}_conv1")(pre)
    y = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
    y = keras.layers.ReLU(name=f"{name}_relu2")(y)
    if dropout:
        y = keras.layers.Dropout(dropout, name=f"{name}_dropout")(y)
    y = _conv(filters, 3, 1, f"{name}_conv2")(y)
    return keras.layers.Add(name=f"{name}_add")([shortcut, y])


def build_resnet(x: tf.Tensor, config: ResNetConfig) -> tf.Tensor:
    """The class probabilities from the image tensor x [N, 28, 28, 1] (after any augmentation)."""
    x = _conv(config.width, 3, 1, "stem")(x)
    for stage in range(config.stages):
        filters = config.width * 2 ** stage
        for block in range(config.blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _block(x, filters, strides, config.block_dropout, f"stage{stage}_block{block}")
    x = keras.layers.BatchNormalization(momentum=0.9, name="final_bn")(x)
    x = keras.layers.ReLU(name="final_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name=EMBEDDING_LAYER)(x)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    return keras.layers.Dense(NUM_CLASSES, activation="softmax", name=PROBABILITIES_OUTPUT,
                              dtype="float32")(x)  # float32 under mixed precision too
