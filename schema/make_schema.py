"""Writes schema/schema.pbtxt, the curated schema the pipeline validates every CSV against.

Why generated rather than inferred: TFDV's inferred schema would accept whatever the first data
set happened to contain (e.g. a pixel column that is always 0 gets a too-narrow domain). The
domain of Fashion-MNIST is known, so we state it: label an integer in [0, 9]; `pixels` exactly 784
integers in [0, 255] (ExampleGen stores an image as one feature); both present in every row. The label is excluded from the
SERVING environment, so serving-time examples validate without it.

    python schema/make_schema.py > schema/schema.pbtxt
"""
from __future__ import annotations

from tensorflow_metadata.proto.v0 import schema_pb2
from google.protobuf import text_format

from pipeline.features import LABEL_KEY, NUM_CLASSES, NUM_PIXELS, RAW_PIXELS_KEY


LABEL_DRIFT_THRESHOLD = 0.05


def build_schema() -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    schema.default_environment.extend(["TRAINING", "SERVING"])

    def add_int_feature(name: str, lo: int, hi: int, values: int) -> schema_pb2.Feature:
        feature = schema.feature.add(name=name, type=schema_pb2.INT)
        feature.int_domain.min, feature.int_domain.max = lo, hi
        feature.presence.min_fraction = 1.0
        feature.presence.min_count = 1
        feature.shape.dim.add(size=values)  # fixed length: exactly `values` per example
        return feature

    label = add_int_feature(LABEL_KEY, 0, NUM_CLASSES - 1, 1)
    label.int_domain.is_categorical = True
    label.not_in_environment.append("SERVING")
    # Class balance: the ValidationGate compares the training split's label distribution with the
    # test split's (TFDV drift check, L-infinity distance); more than 5 points apart on any class
    # means one of the CSVs is not the data set the model is meant to learn.
    label.drift_comparator.infinity_norm.threshold = LABEL_DRIFT_THRESHOLD
    # One feature holds the 784 pixels of an image (row-major), each an integer in [0, 255].
    add_int_feature(RAW_PIXELS_KEY, 0, 255, NUM_PIXELS)
    return schema


if __name__ == "__main__":
    print(text_format.MessageToString(build_schema()), end="")
