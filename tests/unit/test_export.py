"""The serving signatures (components/training/export.py) on a tiny known model: every signature answers
what NumPy computes for the same image, whichever way the client sends it; the warm-up file holds
one request per client-facing signature.

The Transform graph is replaced by a Keras layer doing what preprocessing_fn does (pixels / 255 as
`image`), the model by one softmax layer with fixed weights, so the expected probabilities are
computed here without TensorFlow."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.training.export import WARMUP_FILE, make_signatures, write_warmup_requests
from schema import contract as c  # the names the signatures must use

RNG = np.random.default_rng(7)
WEIGHTS = RNG.normal(0, 1, (c.NUM_PIXELS, c.NUM_CLASSES)).astype(np.float32)
BIAS = RNG.normal(0, 0.1, c.NUM_CLASSES).astype(np.float32)


class _Scale(keras.layers.Layer):
    """Stands in for Transform's layer: raw `pixels` int64 -> `image` float in [0, 1]."""

    def call(self, raw):
        return {c.IMAGE_KEY: tf.cast(raw[c.RAW_PIXELS_KEY], tf.float32) / 255.0}


class _FakeTransformOutput:
    def transform_features_layer(self):
        return _Scale()

    def raw_feature_spec(self):
        return {c.RAW_PIXELS_KEY: tf.io.FixedLenFeature([c.NUM_PIXELS], tf.int64),
                c.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}


@pytest.fixture(scope="module")
def signatures():
    image = keras.Input((c.NUM_PIXELS,), name=c.IMAGE_KEY)
    dense = keras.layers.Dense(c.NUM_CLASSES, activation="softmax", name=c.PROBABILITIES_OUTPUT)
    model = keras.Model({c.IMAGE_KEY: image}, dense(image))
    dense.set_weights([WEIGHTS, BIAS])
    return make_signatures(model, _FakeTransformOutput())


def _expected(pixels: np.ndarray) -> np.ndarray:
    logits = pixels.astype(np.float64) / 255.0 @ WEIGHTS + BIAS
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


PIXELS = RNG.integers(0, 256, (3, c.NUM_PIXELS))


def _csv_examples(pixels: np.ndarray) -> tf.Tensor:
    return tf.constant([tf.train.Example(features=tf.train.Features(feature={
        k: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)])) for k, v in zip(c.PIXEL_KEYS, row)}))
        .SerializeToString() for row in pixels])


def _pixels_examples(pixels: np.ndarray) -> tf.Tensor:
    return tf.constant([tf.train.Example(features=tf.train.Features(feature={
        c.RAW_PIXELS_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=row.tolist()))}))
        .SerializeToString() for row in pixels])


def test_every_signature_is_made_and_named_as_the_contract_says(signatures):
    assert set(signatures) == set(c.SIGNATURES)
    inputs = {name: [s.name for s in fn.input_signature] for name, fn in signatures.items()}
    assert inputs == {c.PREDICT_SIGNATURE: [c.EXAMPLES_INPUT], c.EVAL_SIGNATURE: [c.EXAMPLES_INPUT],
                      c.IMAGES_SIGNATURE: [c.IMAGES_INPUT], c.IMAGES_UINT8_SIGNATURE: [c.IMAGES_INPUT],
                      c.CLASSIFY_SIGNATURE: [c.CLASSIFY_INPUT]}


@pytest.mark.parametrize("signature, to_input", [
    (c.PREDICT_SIGNATURE, _csv_examples),
    (c.EVAL_SIGNATURE, _pixels_examples),
    (c.IMAGES_SIGNATURE, lambda p: tf.constant(p.reshape(-1, c.IMAGE_SIZE, c.IMAGE_SIZE), tf.float32)),
    (c.IMAGES_UINT8_SIGNATURE, lambda p: tf.constant(p.reshape(-1, c.IMAGE_SIZE, c.IMAGE_SIZE), tf.uint8)),
])
def test_each_input_layout_gets_the_models_answer(signatures, signature, to_input):
    out = signatures[signature](to_input(PIXELS))
    expected = _expected(PIXELS)
    np.testing.assert_allclose(out[c.PROBABILITIES_OUTPUT].numpy(), expected, rtol=1e-4, atol=1e-6)
    assert out[c.CLASS_ID_OUTPUT].numpy().tolist() == expected.argmax(axis=1).tolist()
    assert [n.decode() for n in out[c.CLASS_NAME_OUTPUT].numpy()] == [c.CLASS_NAMES[i] for i in expected.argmax(axis=1)]


def test_float_images_are_clipped_and_rounded_to_raw_pixels(signatures):
    """Photos arrive as floats: -3 and 300 become 0 and 255, 12.4 and 12.6 become 12 and 13."""
    floats = PIXELS[:1].astype(np.float32).copy()
    floats[0, :4] = [-3.0, 300.0, 12.4, 12.6]
    as_raw = PIXELS[:1].copy()
    as_raw[0, :4] = [0, 255, 12, 13]
    out = signatures[c.IMAGES_SIGNATURE](tf.constant(floats.reshape(1, c.IMAGE_SIZE, c.IMAGE_SIZE)))
    np.testing.assert_allclose(out[c.PROBABILITIES_OUTPUT].numpy(), _expected(as_raw), rtol=1e-4, atol=1e-6)


def test_classification_lists_every_class_with_its_score(signatures):
    out = signatures[c.CLASSIFY_SIGNATURE](_csv_examples(PIXELS))
    assert out["classes"].numpy().tolist() == [[n.encode() for n in c.CLASS_NAMES]] * len(PIXELS)
    np.testing.assert_allclose(out["scores"].numpy(), _expected(PIXELS), rtol=1e-4, atol=1e-6)


def test_warmup_requests_cover_the_client_signatures(tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    path = write_warmup_requests(str(tmp_path))
    assert path == str(tmp_path / WARMUP_FILE)
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    named = [(log.WhichOneof("log_type"), (log.predict_log.request if log.HasField("predict_log")
                                           else log.classify_log.request).model_spec.signature_name) for log in logs]
    assert named == [("predict_log", c.IMAGES_SIGNATURE), ("predict_log", c.IMAGES_UINT8_SIGNATURE),
                     ("predict_log", c.PREDICT_SIGNATURE), ("classify_log", c.CLASSIFY_SIGNATURE)]
    example = logs[2].predict_log.request.inputs[c.EXAMPLES_INPUT]
    parsed = tf.train.Example.FromString(tf.make_ndarray(example)[0])
    assert sorted(parsed.features.feature) == sorted(c.PIXEL_KEYS)
