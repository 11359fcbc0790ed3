"""Logged requests of the Fashion-MNIST model, back in the pipeline's Examples layout.

The server's request log (serving/request_log.py) holds PredictionLog records of whatever a client
sent to whichever signature. This module knows this model's signatures (components/training/export.py) and
turns each logged image -- float or uint8 image tensors, tf.Examples with one feature per CSV pixel
column or with the `pixels` feature, Predict, Classify or MultiInference -- into one row: the 784
grey values as ExampleGen stores them, the class the model answered, and the image measures of
pipeline/monitoring/image_measures.py. Written as `Split-<name>/data_tfrecord-00000-of-00001.gz`, the layout
of an Examples artifact, so TFDV and every pipeline tool read it like training data.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
from typing import Any, Iterable

import numpy as np

from pipeline.monitoring.image_measures import MEASURES, PREDICTED_LABEL, image_measures
from schema.contract import (
    CLASS_ID_OUTPUT,
    EXAMPLES_INPUT,
    IMAGES_INPUT,
    NUM_PIXELS,
    PIXEL_KEYS,
    PROBABILITIES_OUTPUT,
    RAW_PIXELS_KEY,
)

log = logging.getLogger(__name__)

EXAMPLES_FILE = "data_tfrecord-00000-of-00001.gz"


@dataclasses.dataclass
class ServedRows:
    """Images answered by one model, with the version and class of each answer."""
    pixels: np.ndarray          # [N, 784] int64 as sent (rounded), not clipped
    predicted: np.ndarray       # [N] int64 class ids; -1 when the response had no class
    versions: np.ndarray        # [N] int64
    skipped: collections.Counter  # reason -> records that held no image of this model

    def only(self, version: int) -> "ServedRows":
        keep = self.versions == version
        return ServedRows(self.pixels[keep], self.predicted[keep], self.versions[keep], self.skipped)


def _examples_pixels(serialized: Iterable[bytes]) -> np.ndarray:
    """[N, 784] from tf.Examples with `pixel1`..`pixel784` (serving_default) or `pixels`."""
    import tensorflow as tf

    rows = []
    for raw in serialized:
        features = tf.train.Example.FromString(raw).features.feature
        if RAW_PIXELS_KEY in features:
            values = list(features[RAW_PIXELS_KEY].int64_list.value)
        else:
            values = [features[k].int64_list.value[0] if k in features and features[k].int64_list.value else 0
                      for k in PIXEL_KEYS]
        if len(values) != NUM_PIXELS:
            raise ValueError(f"a logged tf.Example has {len(values)} pixel values, not {NUM_PIXELS}")
        rows.append(values)
    return np.asarray(rows, dtype=np.int64).reshape(-1, NUM_PIXELS)


def _input_examples(data: Any) -> list[bytes]:
    kind = data.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in data.example_list.examples]
    if kind == "example_list_with_context":
        return [e.SerializeToString() for e in data.example_list_with_context.examples]
    return []


def _classes_from_scores(result: Any) -> np.ndarray:
    return np.asarray([int(np.argmax([c.score for c in row.classes])) if row.classes else -1
                       for row in result.classifications], dtype=np.int64)


def rows_from_log(entry: Any) -> tuple[np.ndarray, np.ndarray]:
    """(pixels [N, 784], predicted [N]) of one PredictionLog; ValueError if it holds no image."""
    import tensorflow as tf

    kind = entry.WhichOneof("log_type")
    if kind == "predict_log":
        request, response = entry.predict_log.request, entry.predict_log.response
        if IMAGES_INPUT in request.inputs:
            images = tf.make_ndarray(request.inputs[IMAGES_INPUT]).astype(np.float64)
            pixels = np.rint(images).astype(np.int64).reshape(-1, NUM_PIXELS)
        elif EXAMPLES_INPUT in request.inputs:
            pixels = _examples_pixels(tf.make_ndarray(request.inputs[EXAMPLES_INPUT]).reshape(-1))
        else:
            raise ValueError(f"predict inputs {sorted(request.inputs)} hold no image")
        if CLASS_ID_OUTPUT in response.outputs:
            predicted = tf.make_ndarray(response.outputs[CLASS_ID_OUTPUT]).astype(np.int64).reshape(-1)
        elif PROBABILITIES_OUTPUT in response.outputs:
            predicted = np.argmax(tf.make_ndarray(response.outputs[PROBABILITIES_OUTPUT]), axis=1).astype(np.int64)
        else:
            predicted = np.full(len(pixels), -1, np.int64)
        return pixels, predicted
    if kind == "classify_log":
        pixels = _examples_pixels(_input_examples(entry.classify_log.request.input))
        return pixels, _classes_from_scores(entry.classify_log.response.result)
    if kind == "multi_inference_log":
        pixels = _examples_pixels(_input_examples(entry.multi_inference_log.request.input))
        for result in entry.multi_inference_log.response.results:
            if result.HasField("classification_result"):
                return pixels, _classes_from_scores(result.classification_result)
        return pixels, np.full(len(pixels), -1, np.int64)
    raise ValueError(f"log type {kind} holds no image")


def served_rows(entries: Iterable[Any], model: str | None = None) -> ServedRows:
    """Every logged image of `model` (any model when None), in log order."""
    pixels, predicted, versions = [], [], []
    skipped: collections.Counter = collections.Counter()
    for entry in entries:
        spec = entry.log_metadata.model_spec
        if model and spec.name != model:
            skipped[f"model {spec.name!r}"] += 1
            continue
        try:
            p, c = rows_from_log(entry)
        except (ValueError, KeyError) as e:
            skipped[str(e)[:120]] += 1
            continue
        if len(c) != len(p):
            skipped["response size differs from the request's"] += 1
            continue
        pixels.append(p)
        predicted.append(c)
        versions.append(np.full(len(p), spec.version.value, np.int64))
    if not pixels:
        return ServedRows(np.zeros((0, NUM_PIXELS), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                          skipped)
    return ServedRows(np.concatenate(pixels), np.concatenate(predicted), np.concatenate(versions), skipped)


def read_examples_pixels(split_dir: str) -> np.ndarray:
    """[N, 784] of an Examples artifact's split (ExampleGen's `pixels` feature)."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(split_dir, "*")))
    if not files:
        raise FileNotFoundError(f"{split_dir}: no Examples files")
    spec = {RAW_PIXELS_KEY: tf.io.FixedLenFeature([NUM_PIXELS], tf.int64)}
    batches = [b[RAW_PIXELS_KEY].numpy() for b in
               tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024).map(
                   lambda x: tf.io.parse_example(x, spec))]
    return np.concatenate(batches) if batches else np.zeros((0, NUM_PIXELS), np.int64)


def write_examples(path: str, pixels: np.ndarray, predicted: np.ndarray | None) -> str:
    """tf.Examples in ExampleGen's layout (`pixels`), plus the image measures and, when given,
    the predicted class; GZIP TFRecord like ExampleGen writes."""
    import tensorflow as tf

    measures = image_measures(pixels)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(len(pixels)):
            feature = {RAW_PIXELS_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=pixels[i]))}
            for name in MEASURES:
                value = measures[name][i]
                feature[name] = (tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
                                 if measures[name].dtype.kind == "i"
                                 else tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)])))
            if predicted is not None and predicted[i] >= 0:
                feature[PREDICTED_LABEL] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(predicted[i])]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return path
