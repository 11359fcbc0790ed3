"""Transform's module: the one place raw pixels become model input.

Because this runs inside the TFX Transform graph, the exported model applies exactly the same
function at serving time, so there is no training/serving skew to keep in sync by hand.
"""
from __future__ import annotations

import tensorflow as tf

from schema.contract import IMAGE_KEY, IMAGE_SIZE, LABEL_KEY, NUM_PIXELS, RAW_PIXELS_KEY, TRANSFORMED_LABEL_KEY


def _dense(x: tf.Tensor | tf.SparseTensor, width: int) -> tf.Tensor:
    """Features arrive dense [batch, width] (schema: fixed shape) or sparse; take [batch, width]."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x, default_value=0)
    return tf.reshape(x, [-1, width])


def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """`pixels` (784 ints) -> one float32 image [28, 28, 1] in [0, 1]; label kept as int64 [batch].

    Pixels are clipped to [0, 255] so a serving request can never push activations outside the
    range the model was trained on; training data is already held to that range by validation.
    """
    pixels = tf.cast(_dense(inputs[RAW_PIXELS_KEY], NUM_PIXELS), tf.float32)
    pixels = tf.clip_by_value(pixels, 0.0, 255.0)
    outputs = {IMAGE_KEY: tf.reshape(pixels / 255.0, [-1, IMAGE_SIZE, IMAGE_SIZE, 1])}
    if LABEL_KEY in inputs:
        outputs[TRANSFORMED_LABEL_KEY] = tf.reshape(tf.cast(_dense(inputs[LABEL_KEY], 1), tf.int64), [-1])
    return outputs
