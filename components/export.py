"""The serving signatures: raw inputs in, the Transform graph and the model inside, answers out.

Every signature runs the exported Transform graph (tft_layer) before the model, so a client sends
what the CSV holds -- raw 0-255 pixels -- and can never skew from training. Signatures:

* `serving_default`: serialized tf.Examples (`examples`), what TF Serving's Predict and Classify
  clients send; one int64 feature per pixel named like the CSV columns (`pixel1`..`pixel784`),
  label not needed.
* `serving_pixels_examples`: serialized tf.Examples in the Examples artifact's layout (one int64
  feature `pixels` of 784 values); what the Evaluator feeds the model.
* `serving_images`: float32 images [N, 28, 28] in 0..255 (`images`).
* `serving_images_uint8`: uint8 images [N, 28, 28] (`images`).

All return `probabilities` [N, 10], `class_id` [N] int64 and `class_name` [N] string.
"""
from __future__ import annotations

import os
from typing import Callable

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras as keras  # noqa: E402

from pipeline.features import (CLASS_NAMES, IMAGE_SIZE, LABEL_KEY, NUM_PIXELS,  # noqa: E402
                               PIXEL_KEYS, RAW_PIXELS_KEY)

EXAMPLES_INPUT = "examples"
IMAGES_INPUT = "images"
SIGNATURES = ("serving_default", "serving_images", "serving_images_uint8", "serving_pixels_examples")
EVAL_SIGNATURE = "serving_pixels_examples"


def _answers(model: keras.Model, transformed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    probabilities = model(transformed, training=False)
    class_id = tf.argmax(probabilities, axis=1, output_type=tf.int64)
    class_name = tf.gather(tf.constant(CLASS_NAMES), class_id)
    return {"probabilities": probabilities, "class_id": class_id, "class_name": class_name}


def make_signatures(model: keras.Model, tf_transform_output: tft.TFTransformOutput
                    ) -> dict[str, Callable]:
    """Signature functions for tf.saved_model.save; the model must own `tft_layer` for tracking."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    raw_spec.pop(LABEL_KEY, None)

    def image_features(images: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.reshape(tf.cast(images, tf.float32), [-1, NUM_PIXELS])
        return {RAW_PIXELS_KEY: tf.cast(tf.round(tf.clip_by_value(pixels, 0.0, 255.0)), tf.int64)}

    def run(raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return _answers(model, model.tft_layer(raw))

    pixel_columns = {key: tf.io.FixedLenFeature([], tf.int64) for key in PIXEL_KEYS}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        columns = tf.io.parse_example(examples, pixel_columns)
        return run({RAW_PIXELS_KEY: tf.stack([columns[key] for key in PIXEL_KEYS], axis=1)})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_pixels_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return run(tf.io.parse_example(examples, raw_spec))

    @tf.function(input_signature=[
        tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE], tf.float32, name=IMAGES_INPUT)])
    def serve_images(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return run(image_features(images))

    @tf.function(input_signature=[
        tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE], tf.uint8, name=IMAGES_INPUT)])
    def serve_images_uint8(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return run(image_features(images))

    # tf.functions with input signatures, not concrete functions: only these can be saved when the
    # model's variables are distributed (MultiWorkerMirroredStrategy / MirroredStrategy).
    return {
        "serving_default": serve_examples,
        "serving_images": serve_images,
        "serving_images_uint8": serve_images_uint8,
        EVAL_SIGNATURE: serve_pixels_examples,
    }


def export_model(model: keras.Model, tf_transform_output: tft.TFTransformOutput,
                 export_dir: str) -> None:
    """Writes the SavedModel with all signatures."""
    signatures = make_signatures(model, tf_transform_output)
    tf.saved_model.save(model, export_dir, signatures=signatures)
