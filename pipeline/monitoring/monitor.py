"""`fmnist monitor`: does served traffic still look like the data the served model was trained on?

Steps, each done by the tool made for it:

1. Read the server's request log (PredictionLog TFRecords, serving/request_log.py) and turn the
   logged images into the pipeline's Examples layout, with the image measures and the answered
   class (pipeline/monitoring/served_examples.py).
2. Find the served version's training data through ML Metadata (pipeline/monitoring/lineage.py): its
   StatisticsGen statistics and its ExampleGen Examples.
3. TFDV statistics of the served Examples; the baseline is the training split's statistics (pixel
   values), the training images' measures, and the test split's labels as the expected class mix.
4. TFDV validation with the schema's SERVING environment: the served data against the schema
   (domains), and training vs. served with the schema's skew comparators -- the thresholds live
   in schema/schema.pbtxt (schema/make_schema.py).
5. Outputs under --out: the Examples, both statistics, the anomalies as an ExampleAnomalies
   artifact (`Split-serving/SchemaDiff.pb`), an HTML report with plots, and summary.json.

Exit code 0: no threshold crossed; 1: a threshold crossed or the served data breaks the schema
(the message names the measure, its value and the threshold); 2: nothing to monitor or no lineage.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import numpy as np

from components.errors import FmnistError
from pipeline.monitoring.image_measures import MEASURES, PREDICTED_LABEL
from schema.contract import LABEL_KEY, TEST_SPLIT, TRAIN_SPLIT

log = logging.getLogger(__name__)

SERVING_SPLIT = "serving"
ENVIRONMENT = "SERVING"
STATS_FILE = "FeatureStats.pb"
ANOMALIES_FILE = "SchemaDiff.pb"
REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"
MIN_ROWS = 50   # below this the comparison says more about chance than about the traffic


class MonitorError(FmnistError, RuntimeError):
    """Nothing to monitor (no logs, no lineage); the message says what is missing."""


@dataclasses.dataclass
class Measurement:
    feature: str
    measure: str       # e.g. JENSEN_SHANNON_DIVERGENCE, L_INFTY
    value: float
    threshold: float

    @property
    def crossed(self) -> bool:
        return self.value > self.threshold


@dataclasses.dataclass
class MonitorResult:
    model: str
    version: int
    rows: int
    skipped: dict[str, int]
    measurements: list[Measurement]
    alarms: list[str]            # one line per crossed threshold or schema anomaly
    out_dir: str
    training: Any = None

    @property
    def exit_code(self) -> int:
        return 1 if self.alarms else 0


def _split_dir(uri: str, split: str) -> str:
    """Where split `split` of an artifact directory `uri` goes in TFX's layout (artifact_utils), so
    TFDV tools and TFX read the monitor's outputs like a pipeline's."""
    from tfx.types import artifact_utils, standard_artifacts

    artifact = standard_artifacts.Examples()
    artifact.uri = uri
    artifact.split_names = artifact_utils.encode_split_names([split])
    return artifact_utils.get_split_uri([artifact], split)


def _split_statistics(statistics: Any, split: str) -> Any:
    """StatisticsGen's DatasetFeatureStatisticsList of one split (TFX's own loader)."""
    from tfx.components.statistics_gen import stats_artifact_utils
    return stats_artifact_utils.load_statistics(statistics, split).proto()


def _feature(dataset: Any, name: str) -> Any:
    for f in dataset.features:
        if (f.path.step and f.path.step[0] == name) or f.name == name:
            return f
    return None


def _baseline_statistics(training: Any, schema: Any, out_dir: str) -> Any:
    """Training split's statistics + training images' measures + the test split's label mix
    (as `predicted_label`): what served traffic is compared with."""
    import tensorflow_data_validation as tfdv
    from tfx.types import artifact_utils

    from pipeline.monitoring import served_examples

    train = _split_statistics(training.statistics, TRAIN_SPLIT)
    test = _split_statistics(training.statistics, TEST_SPLIT)
    pixels = served_examples.read_examples_pixels(artifact_utils.get_split_uri([training.examples], TRAIN_SPLIT))
    baseline_dir = _split_dir(os.path.join(out_dir, "baseline_examples"), TRAIN_SPLIT)
    path = served_examples.write_examples(os.path.join(baseline_dir, served_examples.EXAMPLES_FILE), pixels, None)
    measures = tfdv.generate_statistics_from_tfrecord(path, stats_options=_stats_options(schema, MEASURES))
    baseline = train.datasets[0]
    for name in MEASURES:
        feature = _feature(measures.datasets[0], name)
        if feature is not None:
            baseline.features.add().CopyFrom(feature)
    label = _feature(test.datasets[0], LABEL_KEY)
    if label is not None:
        expected = baseline.features.add()
        expected.CopyFrom(label)
        expected.path.step[:] = [PREDICTED_LABEL]
    # The label is not in the SERVING environment; the baseline is compared there.
    kept = [f for f in baseline.features if not (f.path.step and f.path.step[0] == LABEL_KEY)]
    del baseline.features[:]
    baseline.features.extend(kept)
    return train


def _stats_options(schema: Any, features: Any = None) -> Any:
    import tensorflow_data_validation as tfdv
    options = tfdv.StatsOptions(schema=schema)
    if features is not None:
        options.feature_allowlist = list(features)
    return options


def _measurements(anomalies: Any) -> list[Measurement]:
    out = []
    for info in anomalies.drift_skew_info:
        name = info.path.step[0] if info.path.step else "?"
        for m in info.skew_measurements:
            out.append(Measurement(name, _measure_name(m.type), float(m.value), float(m.threshold)))
    return sorted(out, key=lambda m: m.feature)


def _measure_name(kind: int) -> str:
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    return anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(kind)


def _describe(anomalies: Any) -> list[str]:
    lines = []
    for name, info in sorted(anomalies.anomaly_info.items()):
        for reason in info.reason:
            lines.append(f"feature '{name}': {reason.description or reason.short_description}")
    if anomalies.HasField("dataset_anomaly_info"):
        lines += [f"whole data set: {r.description}" for r in anomalies.dataset_anomaly_info.reason]
    return lines


def monitor(logs_dir: str, metadata_path: str, out_dir: str, schema_path: str, model: str | None = None,
            version: int | None = None) -> MonitorResult:
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from pipeline.monitoring import lineage, served_examples
    from serving.request_log import log_files, read_logs

    files = log_files(logs_dir)
    if not files:
        raise MonitorError(f"{logs_dir}: no request log files (*.tfrecord); is logging_config set in the "
                           "server's model config?")
    rows = served_rows = served_examples.served_rows(read_logs(files), model)
    if not len(rows.versions):
        raise MonitorError(f"{logs_dir}: {len(files)} log file(s) but no logged image"
                           + (f" of model {model!r}" if model else "")
                           + (f"; skipped: {dict(rows.skipped)}" if rows.skipped else ""))
    versions, counts = np.unique(rows.versions, return_counts=True)
    version = int(versions[np.argmax(counts)]) if version is None else version
    rows = rows.only(version)
    if len(rows.versions) < MIN_ROWS:
        raise MonitorError(f"{logs_dir}: only {len(rows.versions)} logged images of version {version}; "
                           f"at least {MIN_ROWS} are needed for a comparison")
    try:
        training = lineage.training_data(metadata_path, version)
    except lineage.LineageError as e:
        raise MonitorError(str(e)) from None

    schema = tfdv.load_schema_text(schema_path)
    os.makedirs(out_dir, exist_ok=True)
    examples_path = served_examples.write_examples(
        os.path.join(_split_dir(os.path.join(out_dir, "examples"), SERVING_SPLIT), served_examples.EXAMPLES_FILE),
        rows.pixels, rows.predicted)
    served = tfdv.generate_statistics_from_tfrecord(examples_path, stats_options=_stats_options(schema))
    baseline = _baseline_statistics(training, schema, out_dir)
    for split, stats in ((SERVING_SPLIT, served), ("baseline", baseline)):
        split_dir = _split_dir(os.path.join(out_dir, "statistics"), split)
        os.makedirs(split_dir, exist_ok=True)
        with open(os.path.join(split_dir, STATS_FILE), "wb") as f:
            f.write(stats.SerializeToString())

    data_anomalies = tfdv.validate_statistics(served, schema, environment=ENVIRONMENT)
    skew = tfdv.validate_statistics(baseline, schema, environment=ENVIRONMENT, serving_statistics=served)
    merged = anomalies_pb2.Anomalies()
    merged.CopyFrom(data_anomalies)
    for name, info in skew.anomaly_info.items():
        merged.anomaly_info[name].reason.extend(info.reason)
        if not merged.anomaly_info[name].description:
            merged.anomaly_info[name].description = info.description
    merged.drift_skew_info.extend(skew.drift_skew_info)
    anomalies_dir = _split_dir(os.path.join(out_dir, "anomalies"), SERVING_SPLIT)
    os.makedirs(anomalies_dir, exist_ok=True)
    with open(os.path.join(anomalies_dir, ANOMALIES_FILE), "wb") as f:
        f.write(merged.SerializeToString())

    measurements = _measurements(skew)
    alarms = [f"{m.feature}: {m.measure} {m.value:.4g} above the threshold {m.threshold:g} "
              "(schema/schema.pbtxt skew_comparator)" for m in measurements if m.crossed]
    alarms += [f"served data: {line}" for line in _describe(data_anomalies)]
    result = MonitorResult(model or "", version, int(len(rows.versions)),
                           {k: int(v) for k, v in served_rows.skipped.items()}, measurements, alarms, out_dir,
                           training)
    from pipeline.monitoring import monitor_report
    monitor_report.write_report(os.path.join(out_dir, REPORT_FILE), result, rows, baseline, served)
    with open(os.path.join(out_dir, SUMMARY_FILE), "w") as f:
        json.dump({"model": result.model, "version": version, "rows": result.rows, "skipped": result.skipped,
                   "alarm": bool(alarms), "alarms": alarms,
                   "measurements": [dataclasses.asdict(m) | {"crossed": m.crossed} for m in measurements],
                   "training_statistics": training.statistics_uri, "training_examples": training.examples_uri},
                  f, indent=1)
    return result
