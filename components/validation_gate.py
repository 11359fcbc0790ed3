"""Stops the pipeline when ExampleValidator found anomalies, before Transform and Trainer run.

Why a component: ExampleValidator only records anomalies; TFX runs Transform and Trainer either
way. This gate fails its execution with a message that names every split, feature and anomaly, so
LocalDagRunner (and Kubeflow) stop the run there and nothing downstream -- Pusher included -- runs.
The anomalies stay in the ExampleAnomalies artifact for `tfdv.display_anomalies`.
"""

import logging
import os

from tfx import v1 as tfx
from tfx.types import artifact_utils

log = logging.getLogger(__name__)

ANOMALIES_FILE = "SchemaDiff.pb"


class DataValidationError(RuntimeError):
    """The data does not match the schema; the message lists what to fix."""


def describe_anomalies(anomalies_uri: str, split_names: list[str]) -> list[str]:
    """One line per (split, feature, anomaly), in a stable order."""
    from tensorflow_data_validation.utils.anomalies_util import load_anomalies_binary

    problems: list[str] = []
    for split in split_names:
        path = os.path.join(anomalies_uri, f"Split-{split}", ANOMALIES_FILE)
        anomalies = load_anomalies_binary(path)
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(r.description or r.short_description for r in info.reason)
            problems.append(f"split '{split}', feature '{feature}': {reasons}")
        if anomalies.HasField("dataset_anomaly_info"):
            reasons = "; ".join(r.description for r in anomalies.dataset_anomaly_info.reason)
            problems.append(f"split '{split}', whole data set: {reasons}")
    return problems


@tfx.dsl.components.component
def ValidationGate(anomalies: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleAnomalies]) -> None:
    """Raises DataValidationError if any split has anomalies."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    problems = describe_anomalies(anomalies.uri, splits)
    if problems:
        shown = problems[:20]
        more = [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
        raise DataValidationError(
            "the data does not match schema/schema.pbtxt; stopping before Transform and Trainer:\n  "
            + "\n  ".join(shown + more)
            + f"\n(the anomalies are kept for tfdv.display_anomalies under {anomalies.uri})")
    log.info("data validation passed for splits %s", splits)
