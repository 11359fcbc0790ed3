"""Runs the pipeline with LocalDagRunner and reads back, from ML Metadata, what happened.

The summary (component states and times, metrics, blessing, push destination) is read from the
run's MLMD records and artifacts rather than from logs, so it is exactly what TFX recorded --
including which components were served from the cache.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from pipeline.config import PipelineConfig
from schema import contract
from schema.contract import ACCURACY_METRIC, CLASS_NAMES, EXAMPLE_COUNT_METRIC

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_NOT_PUSHED, EXIT_NOT_SERVABLE = 0, 2, 3, 4


@dataclasses.dataclass
class ComponentRun:
    name: str
    state: str            # COMPLETE, CACHED, FAILED, RUNNING, ...
    seconds: float
    outputs: dict[str, list[Any]]   # output key -> MLMD artifacts


@dataclasses.dataclass
class RunSummary:
    run_id: str
    components: list[ComponentRun]
    metrics: dict[str, dict[str, float]]  # slice ("overall", "label=3") -> metric -> value
    blessed: bool | None
    pushed_to: str | None
    evaluation_uri: str | None
    failures: list[str]
    report_path: str | None = None
    servable: dict[str, str] | None = None   # InfraValidator's outcome: blessed, server, latency, failure
    data_input: dict[str, Any] | None = None   # ExampleGen's per-split files and row counts
    decision: str | None = None       # the Evaluator's paired decision (components/paired_blessing.py)
    threshold_failures: list[str] = dataclasses.field(default_factory=list)  # TFMA's failed thresholds

    def component(self, name: str) -> ComponentRun | None:
        return next((c for c in self.components if c.name == name), None)


def metadata_config(path: str) -> Any:
    from tfx.orchestration import metadata
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return metadata.sqlite_metadata_connection_config(path)


class _ProgressHandler(logging.Handler):
    """Turns LocalDagRunner's per-component records into a progress display.

    LocalDagRunner (tfx/orchestration/local/local_dag_runner.py) has no callback or event for a
    component starting or finishing; its only signal is one INFO record before and one after each
    component's launch. The handler matches those records by their format string and takes the
    component id from their arguments -- the record's structure, not its rendered text.
    """
    EVENTS = {"Component %s is running.": "running", "Component %s is finished.": "finished"}

    def __init__(self, stream: Any = None) -> None:
        super().__init__(logging.INFO)
        self.stream = stream or sys.stderr
        self.started: dict[str, float] = {}
        self.done = 0

    def emit(self, record: logging.LogRecord) -> None:
        what = self.EVENTS.get(record.msg) if isinstance(record.msg, str) else None
        if what is None or not isinstance(record.args, tuple) or len(record.args) != 1:
            return
        node = str(record.args[0])
        if what == "running":
            self.started[node] = time.monotonic()
            self.stream.write(f"  [{self.done + 1:2d}] {node:<32} running ...\n")
        else:
            self.done += 1
            took = time.monotonic() - self.started.get(node, time.monotonic())
            self.stream.write(f"  [{self.done:2d}] {node:<32} done in {took:6.1f} s\n")
        self.stream.flush()


def run_local(config: PipelineConfig, progress: bool = True) -> RunSummary:
    """Run the whole pipeline locally; returns the summary even when a component failed."""
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    pipeline = create_pipeline(config, metadata_connection_config=metadata_config(config.metadata_path))
    handler = _ProgressHandler() if progress else None
    absl_logger = logging.getLogger("absl")
    if handler:
        absl_logger.addHandler(handler)
    error: BaseException | None = None
    try:
        with run_scratch():
            tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception as e:  # not re-raised: the summary records the root cause as a failure, and
        error = e           # exit_code(summary) turns it into the run's status (EXIT_FAILED)
    finally:
        if handler:
            absl_logger.removeHandler(handler)
    summary = summarize(config)
    if error is not None:
        summary.failures.append(root_cause(error))
        # A failed ExampleGen publishes no artifact; its data report travels on the exception.
        summary.data_input = summary.data_input or getattr(innermost(error), "data_input", None)
    return summary


@contextlib.contextmanager
def run_scratch() -> Iterator[str]:
    """The process's temporary directory for one run, removed when the run ends.

    LocalDagRunner runs the executors in this process, and what they leave in the temporary
    directory is never removed: with Beam arguments set, every Beam executor builds a ~52 MB sdist
    of TFX ("tfx_ephemeral", for remote workers) in its own tempfile.mkdtemp()
    (tfx/dsl/components/base/base_beam_executor.py -> tfx/utils/dependency_utils.py
    build_ephemeral_package), four per run on a cluster; Beam leaves beam-temp-* directories.
    Here they went into one directory, gone after the run (14 GB had piled up in /tmp: the disk
    filled and a CI run failed).
    """
    previous = tempfile.tempdir
    scratch = tempfile.mkdtemp(prefix="fmnist-run-")
    tempfile.tempdir = scratch
    try:
        yield scratch
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(scratch, ignore_errors=True)


def innermost(error: BaseException) -> BaseException:
    while True:
        inner = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
        if inner is None:
            return error
        error = inner


def root_cause(error: BaseException) -> str:
    """The innermost exception's message: what the user has to fix, not the runner's wrapper."""
    error = innermost(error)
    return f"{type(error).__name__}: {error}"


def summarize(config: PipelineConfig) -> RunSummary:
    """What the latest run of `config`'s pipeline recorded in ML Metadata."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    store = metadata_store.MetadataStore(metadata_config(config.metadata_path))
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return RunSummary("", [], {}, None, None, None, ["no pipeline run recorded"])
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    components: list[ComponentRun] = []
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        node = next((c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(execution.id)
                     if c.type == "node"), str(execution.id))
        outputs: dict[str, list[Any]] = {}
        events = [e for e in store.get_events_by_execution_ids([execution.id])
                  if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        for event in events:
            key = event.path.steps[0].key if event.path.steps else "output"
            outputs.setdefault(key, []).append(artifacts[event.artifact_id])
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        components.append(ComponentRun(node, state, seconds, outputs))
    summary = RunSummary(run.name, components, {}, None, None, None, [])
    summary.data_input = load_data_input(summary.component(contract.EXAMPLE_GEN))
    evaluator = summary.component(contract.EVALUATOR)
    if evaluator and evaluator.outputs.get("evaluation"):
        summary.evaluation_uri = evaluator.outputs["evaluation"][0].uri
        summary.metrics = load_metrics(summary.evaluation_uri)
    if evaluator and evaluator.outputs.get("blessing"):
        props = evaluator.outputs["blessing"][0].custom_properties
        summary.blessed = bool(props["blessed"].int_value) if "blessed" in props else None
        if "decision_summary" in props:
            summary.decision = props["decision_summary"].string_value
        if summary.evaluation_uri and summary.blessed is not None:
            from components.report import threshold_failures
            summary.threshold_failures = threshold_failures(summary.evaluation_uri)
    infra = summary.component(contract.INFRA_VALIDATOR)
    if infra and infra.outputs.get("blessing"):
        props = infra.outputs["blessing"][0].custom_properties
        summary.servable = {key: (str(value.int_value) if value.HasField("int_value") else
                                  f"{value.double_value:.2f}" if value.HasField("double_value") else
                                  value.string_value) for key, value in props.items()}
    pusher = summary.component(contract.PUSHER)
    if pusher and pusher.outputs.get("pushed_model"):
        props = pusher.outputs["pushed_model"][0].custom_properties
        if props.get("pushed") and props["pushed"].int_value:
            summary.pushed_to = props["pushed_destination"].string_value
    run_report = summary.component(contract.RUN_REPORT)
    if run_report and run_report.outputs.get("report_dir"):
        path = os.path.join(run_report.outputs["report_dir"][0].uri, contract.REPORT_FILE)
        summary.report_path = path if os.path.exists(path) else None
    return summary


def load_data_input(example_gen: ComponentRun | None) -> dict[str, Any] | None:
    """The per-split data report FastCsvExampleGen recorded on its Examples artifact."""
    import json

    for artifact in (example_gen.outputs.get("examples", []) if example_gen else []):
        prop = artifact.custom_properties.get(contract.DATA_REPORT_PROPERTY)
        if prop is not None and prop.string_value:
            return json.loads(prop.string_value)
    return None


def load_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """TFMA's metrics per slice as plain floats: {'overall': {...}, 'label=6': {...}}."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(evaluation_uri)
    out: dict[str, dict[str, float]] = {}
    for slice_key, by_output in result.slicing_metrics:
        name = "overall" if not slice_key else ",".join(f"{k}={v}" for k, v in slice_key)
        values: dict[str, float] = {}
        for sub_keys in by_output.values():
            for metric, value in sub_keys.get("", {}).items():
                if isinstance(value, dict) and "doubleValue" in value:
                    values[metric] = float(value["doubleValue"])
        out[name] = values
    return out


def format_summary(summary: RunSummary, config: PipelineConfig) -> str:
    from components.data_input.csv_example_gen import describe

    lines = [f"pipeline run {summary.run_id}"]
    for c in summary.components:
        mark = " (cached)" if c.state == "CACHED" else ""
        lines.append(f"  {c.name:<32} {c.state:<9} {c.seconds:7.1f} s{mark}")
    if summary.data_input:
        lines.append("data:")
        lines.extend(f"  {line}" for line in describe(summary.data_input))
    overall = summary.metrics.get("overall", {})
    if overall:
        acc = overall.get(ACCURACY_METRIC)
        lines.append(f"test accuracy: {acc:.4f} on {int(overall.get(EXAMPLE_COUNT_METRIC, 0))} examples "
                     f"(threshold {config.accuracy_threshold:.4f})")
        per_class = []
        for i, name in enumerate(CLASS_NAMES):
            m = summary.metrics.get(f"label={i}", {})
            if ACCURACY_METRIC in m:
                per_class.append(f"    {i} {name:<12} recall {m[ACCURACY_METRIC]:.4f}")
        lines.extend(["  per class:"] + per_class if per_class else [])
    if summary.blessed is not None:
        lines.append(f"blessing: {'BLESSED' if summary.blessed else 'NOT BLESSED'}")
        lines.extend(f"  threshold failed: {failure}" for failure in summary.threshold_failures)
    if summary.decision:
        lines.append(f"decision: {summary.decision}")
    if summary.servable and "blessed" in summary.servable:
        s = summary.servable
        if s["blessed"] == "1":
            latency = (f", p50 {s['latency_p50_ms']} ms, p99 {s['latency_p99_ms']} ms"
                       if "latency_p99_ms" in s else "")
            lines.append(f"servable: yes ({s.get('server', '?')}{latency})")
        else:
            lines.append(f"servable: NO -- {s.get('failed_check', '?')} check failed: {s.get('failure', '')}")
    lines.append(f"pushed to: {summary.pushed_to}" if summary.pushed_to
                 else "pushed: nothing (the serving directory is unchanged)")
    from pipeline.span_summary import describe_spans
    lines.extend(describe_spans(summary))
    if summary.report_path:
        lines.append(f"report: {summary.report_path}")
    for failure in summary.failures:
        lines.append(f"FAILED: {failure}")
    return "\n".join(lines)


def exit_code(summary: RunSummary) -> int:
    if summary.failures:
        return EXIT_FAILED
    if summary.pushed_to:
        return EXIT_OK
    if summary.blessed and summary.servable and summary.servable.get("blessed") == "0":
        return EXIT_NOT_SERVABLE
    return EXIT_NOT_PUSHED
