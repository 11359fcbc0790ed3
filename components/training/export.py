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

* `classification`: TF Serving's classification layout, so its Classify API works on this model
  with the model's own class names: input `inputs` (serialized tf.Examples as for
  `serving_default`), outputs `classes` [N, 10] string and `scores` [N, 10].

`assets.extra/tf_serving_warmup_requests` holds one PredictionLog per signature a client uses; TF
Serving (and `serving/`) replay them before a version answers, so no client pays the first-call cost.
"""
from __future__ import annotations

import os
from typing import Callable

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from schema.contract import (
    CLASS_ID_OUTPUT,
    CLASS_NAME_OUTPUT,
    CLASS_NAMES,
    CLASSIFY_INPUT,
    CLASSIFY_SIGNATURE,
    EVAL_SIGNATURE,
    EXAMPLES_INPUT,
    IMAGE_SIZE,
    IMAGES_INPUT,
    IMAGES_SIGNATURE,
    IMAGES_UINT8_SIGNATURE,
    LABEL_KEY,
    NUM_PIXELS,
    PIXEL_KEYS,
    PREDICT_SIGNATURE,
    PROBABILITIES_OUTPUT,
    RAW_PIXELS_KEY,
    SIGNATURES,
)

__all__ = ["SIGNATURES", "WARMUP_FILE", "export_model", "make_signatures", "write_warmup_requests"]

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def _answers(model: keras.Model, transformed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    probabilities = model(transformed, training=False)
    class_id = tf.argmax(probabilities, axis=1, output_type=tf.int64)
    class_name = tf.gather(tf.constant(CLASS_NAMES), class_id)
    return {PROBABILITIES_OUTPUT: probabilities, CLASS_ID_OUTPUT: class_id, CLASS_NAME_OUTPUT: class_name}


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

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUT)])
    def classify_examples(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = serve_examples(inputs)[PROBABILITIES_OUTPUT]
        classes = tf.tile(tf.constant([CLASS_NAMES]), [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}

    # tf.functions with input signatures, not concrete functions: only these can be saved when the
    # model's variables are distributed (MultiWorkerMirroredStrategy / MirroredStrategy).
    return {
        PREDICT_SIGNATURE: serve_examples,
        IMAGES_SIGNATURE: serve_images,
        IMAGES_UINT8_SIGNATURE: serve_images_uint8,
        EVAL_SIGNATURE: serve_pixels_examples,
        CLASSIFY_SIGNATURE: classify_examples,
    }


def export_model(model: keras.Model, tf_transform_output: tft.TFTransformOutput,
                 export_dir: str) -> None:
    """Writes the SavedModel with all signatures."""
    signatures = make_signatures(model, tf_transform_output)
    tf.saved_model.save(model, export_dir, signatures=signatures)
    write_warmup_requests(export_dir)


def _pixels_example() -> tf.train.Example:
    """A tf.Example as `serving_default` takes it: one int64 feature per CSV pixel column."""
    feature = {key: tf.train.Feature(int64_list=tf.train.Int64List(value=[0])) for key in PIXEL_KEYS}
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_warmup_requests(export_dir: str) -> str:
    """`assets.extra/tf_serving_warmup_requests`: one PredictionLog per client-facing signature.

    TF Serving's SavedModel warm-up format (TFRecord of tensorflow.serving.PredictionLog); a
    request per signature makes both TF Serving and this project's server trace every path a
    client will take before the version is switched in.
    """
    from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2

    logs = []
    for name, dtype in ((IMAGES_SIGNATURE, tf.float32), (IMAGES_UINT8_SIGNATURE, tf.uint8)):
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = name
        request.inputs[IMAGES_INPUT].CopyFrom(tf.make_tensor_proto(tf.zeros([1, IMAGE_SIZE, IMAGE_SIZE], dtype)))
        logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    example = _pixels_example()
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = PREDICT_SIGNATURE
    request.inputs[EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto([example.SerializeToString()]))
    logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.signature_name = CLASSIFY_SIGNATURE
    classify.input.example_list.examples.append(example)
    logs.append(prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=classify)))
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for entry in logs:
            writer.write(entry.SerializeToString())
    return path
