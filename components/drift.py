"""SpanDrift: a new span whose data drifted from the previous span's stops the run before training.

Continuous training (components/spans.py) trains on a rolling window of spans; a span whose images
or class balance moved away from what came before (a new camera, inverted exports, one class
missing) would silently become part of every model after it. TFDV's drift check does the
comparison: `validate_statistics(new, schema, previous_statistics=previous)` applies the schema's
`drift_comparator`s (schema/schema.pbtxt: L-infinity distance of the label's class shares,
Jensen-Shannon divergence of the grey values) and records each measurement in `drift_skew_info`.

Where the previous span's statistics come from: the span store, where SpanWindow keeps the
StatisticsGen output of every span it accepted. Not ML Metadata through a resolver node -- the
open-source KFP backend does not run resolver executors ("resolver executors not implemented",
backend/src/v2/compiler/argocompiler/dag.go) -- so the same step runs locally and on Kubeflow.
The first span has nothing to compare with and passes.
"""

import logging
import os

from tfx import v1 as tfx

from components.errors import FmnistError
from schema.contract import TEST_SPLIT, TRAIN_SPLIT

log = logging.getLogger(__name__)

STATS_FILE = "FeatureStats.pb"
DRIFT_SPLITS = (TRAIN_SPLIT, TEST_SPLIT)


class SpanDriftError(FmnistError, RuntimeError):
    """The new span drifted from the previous one beyond the schema's thresholds."""


_MEASURES = {"L_INFTY": "L-infinity distance", "JENSEN_SHANNON_DIVERGENCE": "Jensen-Shannon divergence",
             "NORMALIZED_ABSOLUTE_DIFFERENCE": "normalized absolute difference"}


def _measure_name(kind: int) -> str:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    name = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(kind)
    return _MEASURES.get(name, name.lower())


def drift_between(new_stats_path: str, previous_stats_path: str, schema_path: str) -> tuple[list[str], list[str]]:
    """TFDV's drift check of one split: (problems, every measurement as text).

    A problem names the feature, the measure, its value and the schema's threshold.
    """
    import tensorflow_data_validation as tfdv

    schema = tfdv.load_schema_text(schema_path)
    anomalies = tfdv.validate_statistics(tfdv.load_stats_binary(new_stats_path), schema,
                                         previous_statistics=tfdv.load_stats_binary(previous_stats_path))
    measured, problems = [], []
    for info in anomalies.drift_skew_info:
        feature = "/".join(info.path.step)
        for m in info.drift_measurements:
            text = f"feature '{feature}': {_measure_name(m.type)} {m.value:.4f} (threshold {m.threshold:g})"
            measured.append(text)
            if m.value > m.threshold:
                problems.append(text.replace(" (threshold", " above the threshold").rstrip(")"))
    return problems, measured


@tfx.dsl.components.component
def SpanDrift(
        examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
        statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
        schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
        span_store: tfx.dsl.components.Parameter[str],
        run_token: tfx.dsl.components.Parameter[str] = "") -> None:
    """Raises SpanDriftError when the new span drifted from the latest earlier span in the store.

    run_token (unique per run) keeps the step out of any cache: the store changes between runs
    while the step's inputs may not.
    """
    from tfx.utils import io_utils

    from components import spans

    span = spans.artifact_span(examples)
    previous = [s for s in spans.stored_spans(span_store) if s < span]
    if not previous:
        log.info("span %d: no earlier span in %s, nothing to compare with (run %s)", span, span_store, run_token)
        return
    before = previous[-1]
    schema_path = io_utils.get_only_uri_in_dir(schema.uri)
    lines, problems = [], []
    for split in DRIFT_SPLITS:
        new_path = os.path.join(statistics.uri, f"Split-{split}", STATS_FILE)
        old_path = spans.statistics_path(span_store, before, split)
        found, measured = drift_between(new_path, old_path, schema_path)
        lines += [f"split '{split}', {m}" for m in measured]
        problems += [f"split '{split}', {p}" for p in found]
    for line in lines:
        log.info("span %d vs span %d: %s", span, before, line)
    if problems:
        raise SpanDriftError(
            f"span {span} drifted from span {before} beyond the drift thresholds of schema/schema.pbtxt; "
            "stopping before Transform and Trainer (the span is not added to the training window):\n  "
            + "\n  ".join(problems))
