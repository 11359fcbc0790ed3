"""Stops the pipeline when ExampleValidator found anomalies, before Transform and Trainer run.

Why a component: ExampleValidator only records anomalies; TFX runs Transform and Trainer either
way. This gate fails its execution with a message that names every split, feature and anomaly,
so LocalDagRunner (and Kubeflow) stop the run there and nothing downstream -- Pusher included --
runs. TFDV reports per feature ("pixels: unexpectedly large value 300"); to make that fixable the
gate then asks the data source (pipeline/sources/) for the first offending rows in its own files
-- for CSVs the file, line, column and value (components/data_input/csv_example_gen.py, offending_cells).
The anomalies stay in the ExampleAnomalies artifact for `tfdv.display_anomalies`.
"""
import importlib
import json
import logging
import os
from typing import Callable

from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact

from components.errors import FmnistError

log = logging.getLogger(__name__)



class DataValidationError(FmnistError, RuntimeError):
    """The data does not match the schema; the message lists what to fix."""


def describe_anomalies(anomalies_artifact: Artifact, split_names: list[str]) -> dict[str, list[str]]:
    """{split: ["feature 'x': description", ...]} for the splits that have anomalies."""
    from tensorflow_data_validation.utils.anomalies_util import load_anomalies_binary
    from tfx.components.example_validator.executor import DEFAULT_FILE_NAME as ANOMALIES_FILE

    problems: dict[str, list[str]] = {}
    for split in split_names:
        split_dir = artifact_utils.get_split_uri([anomalies_artifact], split)
        anomalies = load_anomalies_binary(os.path.join(split_dir, ANOMALIES_FILE))
        lines = []
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(r.description or r.short_description for r in info.reason)
            lines.append(f"feature '{feature}': {reasons}")
        if anomalies.HasField("dataset_anomaly_info"):
            lines.append("whole data set: " + "; ".join(
                r.description for r in anomalies.dataset_anomaly_info.reason))
        if lines:
            problems[split] = lines
    return problems


def domains_from_schema(schema_uri: str) -> dict[str, tuple[int, int]]:
    """{feature: (min, max)} of the schema's integer domains."""
    from tfx.utils import io_utils

    schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema_uri))
    return {f.name: (f.int_domain.min, f.int_domain.max) for f in schema.feature
            if f.HasField("int_domain")}


def label_drift(statistics: Artifact, schema_uri: str, train_split: str, test_split: str) -> list[str]:
    """TFDV's drift check of the schema's drift comparators, training split vs. test split."""
    import tensorflow_data_validation as tfdv
    from tfx.components.statistics_gen import stats_artifact_utils
    from tfx.utils import io_utils

    schema = io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(schema_uri))

    def load(split: str):
        return stats_artifact_utils.load_statistics(statistics, split).proto()

    anomalies = tfdv.validate_statistics(load(train_split), schema, previous_statistics=load(test_split))
    return [f"feature '{name}': {'; '.join(r.description for r in info.reason)}"
            for name, info in sorted(anomalies.anomaly_info.items())
            if any(r.type == anomalies_pb2().AnomalyInfo.COMPARATOR_L_INFTY_HIGH for r in info.reason)]


def anomalies_pb2():
    from tensorflow_metadata.proto.v0 import anomalies_pb2 as pb
    return pb


def resolve(dotted: str) -> Callable[..., list[str]]:
    """`package.module.function` -> the function (as TFX resolves run_fn and preprocessing_fn)."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@tfx.dsl.components.component
def ValidationGate(
        anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
        statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
        schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
        input_base: tfx.dsl.components.Parameter[str],
        split_patterns: tfx.dsl.components.Parameter[str],
        row_lookup: tfx.dsl.components.Parameter[str] = "",
        examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples] = None,
) -> None:
    """Raises DataValidationError if any split has anomalies.

    split_patterns: JSON {split name: file pattern under input_base}, as given to ExampleGen;
      the first two are the training and test splits compared for label drift.
    row_lookup: dotted name of the data source's `f(input_base, split, pattern, domains) -> [lines]`
      naming the offending rows in its files (pipeline/sources/); "" lists the anomalies only.
    examples: ExampleGen's output, only needed to resolve `{SPAN}` in span patterns.
    """
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    problems = describe_anomalies(anomalies, splits)
    # A span pattern (`span-{SPAN}/...`) is read with the span ExampleGen ingested (`examples`).
    patterns = json.loads(split_patterns)
    if examples is not None:
        from components.spans import artifact_span
        patterns = {split: p.replace("{SPAN}", str(artifact_span(examples))) for split, p in patterns.items()}
    train_split, test_split = list(patterns)[:2]
    if {train_split, test_split} <= set(splits):
        drift = label_drift(statistics, schema.uri, train_split, test_split)
        if drift:
            problems.setdefault(train_split, []).extend(
                f"{d} (class balance of '{train_split}' vs. '{test_split}')" for d in drift)
    if not problems:
        log.info("data validation passed for splits %s", splits)
        return
    domains = domains_from_schema(schema.uri)
    lookup = resolve(row_lookup) if row_lookup else None
    lines = []
    for split, found in problems.items():
        lines += [f"split '{split}', {p}" for p in found]
        if lookup and split in patterns:
            try:
                cells = lookup(input_base, split, patterns[split], domains)
            except Exception as e:  # the detail is a help; never hide the anomalies behind it
                cells = [f"(could not look up the offending rows: {e})"]
            lines += [f"    {c}" for c in cells]
    raise DataValidationError(
        "the data does not match schema/schema.pbtxt; stopping before Transform and Trainer:\n  "
        + "\n  ".join(lines)
        + f"\n(the anomalies are kept for tfdv.display_anomalies under {anomalies.uri})")
