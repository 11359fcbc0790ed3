"""Writes schema/schema.pbtxt, the curated schema the pipeline validates every CSV against.

Why generated rather than inferred: TFDV's inferred schema would accept whatever the first data
set happened to contain (e.g. a pixel column that is always 0 gets a too-narrow domain). The
domain of Fashion-MNIST is known, so we state it: label an integer in [0, 9]; `pixels` exactly 784
integers in [0, 255] (ExampleGen stores an image as one feature); both present in every row. The
label is excluded from the SERVING environment, so serving-time examples validate without it.

The production monitor (`fmnist monitor`) keeps its thresholds here too, as TFDV skew comparators:
training data vs. served requests. The training pipeline never passes serving statistics to TFDV,
so these comparators do not change its validation. The monitor's own features (image measures and
the predicted class, named in schema/contract.py, computed by pipeline/monitoring/image_measures.py) are not
in the TRAINING environment and carry no presence constraint, so training Examples -- which do not
have them -- stay valid.

    python schema/make_schema.py > schema/schema.pbtxt
"""
from __future__ import annotations

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from schema.contract import (
    CENTRE_OFFSET,
    LABEL_KEY,
    LIGHT_BACKGROUND,
    MEAN_BRIGHTNESS,
    NEAR_EMPTY,
    NUM_CLASSES,
    NUM_PIXELS,
    PREDICTED_LABEL,
    RAW_PIXELS_KEY,
)

LABEL_DRIFT_THRESHOLD = 0.05
# Between spans (continuous training, components/drift.py): a new span's grey-value distribution vs.
# the previous span's, Jensen-Shannon divergence. Spans drawn from the same data set stay far
# below (BENCHMARKS.md "Continuous training"); inverted or re-exposed images go well above.
PIXELS_DRIFT_THRESHOLD = 0.1

# Monitoring thresholds (training vs. served traffic). Jensen-Shannon divergence for numeric
# features (TFDV's histogram-based approximation), L-infinity distance -- the largest difference
# of one category's share -- for categorical ones. Chosen so that served test rows stay well below
# and inverted, shifted or brightness-changed images go well above (BENCHMARKS.md "Monitoring").
SERVING_THRESHOLDS: dict[str, tuple[str, float]] = {
    RAW_PIXELS_KEY: ("jensen_shannon_divergence", 0.1),
    MEAN_BRIGHTNESS: ("jensen_shannon_divergence", 0.1),
    CENTRE_OFFSET: ("jensen_shannon_divergence", 0.1),
    LIGHT_BACKGROUND: ("infinity_norm", 0.05),
    NEAR_EMPTY: ("infinity_norm", 0.05),
    # The served model's predicted class mix vs. the test split's labels.
    PREDICTED_LABEL: ("infinity_norm", 0.1),
}


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
    pixels = add_int_feature(RAW_PIXELS_KEY, 0, 255, NUM_PIXELS)
    # Drift between spans (the label's comparator above serves both checks).
    pixels.drift_comparator.jensen_shannon_divergence.threshold = PIXELS_DRIFT_THRESHOLD

    # Features only the monitor computes (per served or training image); not in TRAINING data.
    def add_monitor_feature(name: str, kind: int) -> schema_pb2.Feature:
        feature = schema.feature.add(name=name, type=kind)
        feature.not_in_environment.append("TRAINING")
        return feature

    brightness = add_monitor_feature(MEAN_BRIGHTNESS, schema_pb2.FLOAT)
    brightness.float_domain.min, brightness.float_domain.max = 0.0, 255.0
    add_monitor_feature(CENTRE_OFFSET, schema_pb2.FLOAT).float_domain.min = 0.0
    for name in (LIGHT_BACKGROUND, NEAR_EMPTY):
        flag = add_monitor_feature(name, schema_pb2.INT)
        flag.int_domain.min, flag.int_domain.max, flag.int_domain.is_categorical = 0, 1, True
    predicted = add_monitor_feature(PREDICTED_LABEL, schema_pb2.INT)
    predicted.int_domain.min, predicted.int_domain.max = 0, NUM_CLASSES - 1
    predicted.int_domain.is_categorical = True

    by_name = {f.name: f for f in schema.feature}
    for name, (measure, threshold) in SERVING_THRESHOLDS.items():
        getattr(by_name[name].skew_comparator, measure).threshold = threshold
    return schema


if __name__ == "__main__":
    print(text_format.MessageToString(build_schema()), end="")
