"""Which data a served model was trained on, found through ML Metadata.

The pipeline records every artifact and execution in MLMD. From the version a request was
answered by, the chain back to the data is

    PushedModel (pushed_version = the served version)
      <- Pusher <- Model (or <- InfraBlessing <- InfraValidator <- Model, when the Pusher pushes
         the InfraValidator's copy with warm-up records, as this pipeline does)
      <- Trainer <- transformed Examples <- Transform <- Examples (ExampleGen)
      -> StatisticsGen -> ExampleStatistics

so the monitor compares served traffic with the statistics of exactly the data that model saw,
even after later runs have trained on other data. Events (not artifact names or directory layouts)
link the steps, so this works for cached executions and for any pipeline root.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.errors import FmnistError


class LineageError(FmnistError, LookupError):
    """The metadata store does not lead from the served version to its training statistics."""


@dataclasses.dataclass(frozen=True)
class TrainingData:
    version: int
    pushed_model_dir: str      # the served version's directory
    model_uri: str             # the Trainer's Model artifact
    examples_uri: str          # ExampleGen's Examples artifact (Split-train/, Split-test/)
    statistics_uri: str        # StatisticsGen's ExampleStatistics of those Examples
    split_names: tuple[str, ...]
    examples: Any = None       # the same two as TFX artifacts, for artifact_utils / TFDV's loaders
    statistics: Any = None


def open_store(path: str) -> metadata_store.MetadataStore:
    if not os.path.exists(path):
        raise LineageError(f"{path}: no ML Metadata store there (run the pipeline first, or pass --metadata)")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _type_names(store: Any) -> dict[int, str]:
    return {t.id: t.name for t in store.get_artifact_types()}


def _producer(store: Any, artifact_id: int) -> int:
    """The execution that output the artifact."""
    events = [e for e in store.get_events_by_artifact_ids([artifact_id])
              if e.type == metadata_store_pb2.Event.OUTPUT]
    if not events:
        raise LineageError(f"artifact {artifact_id} has no producing execution in the metadata store")
    return events[-1].execution_id


def _inputs(store: Any, execution_id: int, type_name: str, types: dict[int, str]) -> list[Any]:
    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution_id])
           if e.type == metadata_store_pb2.Event.INPUT]
    return [a for a in store.get_artifacts_by_id(ids) if types.get(a.type_id) == type_name]


def _key(event: Any) -> str:
    return event.path.steps[0].key if event.path.steps else ""


def training_data(metadata_path: str, version: int) -> TrainingData:
    """Follow the served version's lineage back to its training Examples and their statistics."""
    store = open_store(metadata_path)
    types = _type_names(store)
    pushed = [a for a in store.get_artifacts_by_type("PushedModel")
              if a.custom_properties.get("pushed_version") is not None
              and a.custom_properties["pushed_version"].string_value == str(version)]
    if not pushed:
        raise LineageError(f"{metadata_path}: no PushedModel with pushed_version {version}; this store "
                           "did not push the served version (wrong --metadata?)")
    pushed_model = pushed[-1]
    pusher = _producer(store, pushed_model.id)
    models = _inputs(store, pusher, "Model", types)
    for infra_blessing in ([] if models else _inputs(store, pusher, "InfraBlessing", types)):
        models = _inputs(store, _producer(store, infra_blessing.id), "Model", types)
    if not models:
        raise LineageError(f"the Pusher of version {version} has no Model input recorded")
    trainer = _producer(store, models[0].id)
    transformed = _inputs(store, trainer, "Examples", types)
    if not transformed:
        raise LineageError(f"the Trainer of version {version} has no Examples input recorded")
    raw = transformed[0]
    transform_inputs = _inputs(store, _producer(store, raw.id), "Examples", types)
    if transform_inputs:          # Trainer <- Transform <- ExampleGen
        raw = transform_inputs[0]
    # StatisticsGen: the execution that read these Examples and output 'statistics'.
    consumers = {e.execution_id for e in store.get_events_by_artifact_ids([raw.id])
                 if e.type == metadata_store_pb2.Event.INPUT}
    statistics = []
    for event in store.get_events_by_execution_ids(sorted(consumers)):
        if event.type == metadata_store_pb2.Event.OUTPUT and _key(event) == "statistics":
            statistics.append(event.artifact_id)
    if not statistics:
        raise LineageError(f"no StatisticsGen output for the Examples {raw.uri} of version {version}")
    [stats] = store.get_artifacts_by_id([statistics[-1]])
    splits = raw.properties.get("split_names") or raw.custom_properties.get("split_names")
    import json
    split_names = tuple(json.loads(splits.string_value)) if splits is not None else ()
    return TrainingData(version, pushed_model.custom_properties["pushed_destination"].string_value,
                        models[0].uri, raw.uri, stats.uri, split_names,
                        examples=_tfx_artifact(raw, "Examples"), statistics=_tfx_artifact(stats, "ExampleStatistics"))


def _tfx_artifact(mlmd_artifact: Any, type_name: str) -> Any:
    """The ML Metadata record as a TFX artifact of the standard type (split names, version props)."""
    from tfx.types import standard_artifacts

    artifact = getattr(standard_artifacts, type_name)()
    artifact.set_mlmd_artifact(mlmd_artifact)
    return artifact
