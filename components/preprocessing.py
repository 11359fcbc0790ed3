"""Transform's module: the one place raw CSV pixels become model input.

Because this runs inside the TFX Transform graph, the exported model applies exactly the same
function at serving time, so there is no training/serving skew to keep in sync by hand.
"""
from __future__ import annotations

import tensorflow as tf

from pipeline.features import (IMAGE_KEY, IMAGE_SIZE, LABEL_KEY, PIXEL_KEYS,
                               TRANSFORMED_LABEL_KEY)


def _dense(x: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """Pixels arrive as [batch, 1] dense (schema: fixed shape) or sparse (no shape); take [batch]."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x, default_value=0)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """784 int pixel features -> one float32 image [28, 28, 1] in [0, 1]; label kept as int64.

    Pixels are clipped to [0, 255] so a serving request can never push activations outside the
    range the model was trained on; training data is already held to that range by validation.
    """
    pixels = tf.stack([_dense(inputs[key]) for key in PIXEL_KEYS], axis=1)
    pixels = tf.clip_by_value(tf.cast(pixels, tf.float32), 0.0, 255.0)
    image = tf.reshape(pixels / 255.0, [-1, IMAGE_SIZE, IMAGE_SIZE, 1])
    outputs = {IMAGE_KEY: image}
    if LABEL_KEY in inputs:
        outputs[TRANSFORMED_LABEL_KEY] = tf.cast(_dense(inputs[LABEL_KEY]), tf.int64)
    return outputs
