"""The pipeline's DAG, built from a PipelineConfig; the one definition every runner uses.

LocalDagRunner runs it here; kubeflow/ compiles the very same function for Kubeflow Pipelines
(and swaps its runtime parameters in: kubeflow/parameters.py).

    ExampleGen -> StatisticsGen -> ExampleValidator(ImportSchemaGen) -> ValidationGate
      -> Transform -> [Tuner, with tune=true] -> Trainer
      -> Evaluator (vs. the served model) + InfraValidator -> AtomicPusher

Built in stages, each a function of the config and the stages before it, so a benchmark or a test
takes the stages it needs (e.g. the data stages alone, benchmarks/common.py) instead of the DAG
growing flags: data_in (ExampleGen -- its source chosen in pipeline/sources/ --, the schema,
statistics), validation (ExampleValidator, the gate; span mode: the holdout, the drift check, the
rolling window), preprocessing (Transform), training (the served model, the Tuner, the Trainer),
release (Evaluator, InfraValidator, Pusher, the run report).
"""
from __future__ import annotations

import dataclasses
import json
import os
import uuid
from typing import Any, Iterable

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base.base_node import BaseNode

from components import paired_metric
from components.baseline import ServedModelBaseline
from components.custom_components import AtomicPusher, EpochsTrainer, ThresholdEvaluator
from components.drift import SpanDrift
from components.infra_validator import LocalInfraValidator
from components.report_component import RunReport
from components.spans import SpanWindow
from components.validation_gate import ValidationGate
from pipeline import sources
from pipeline.config import PipelineConfig
from schema import contract
from schema.contract import (
    EVAL_SIGNATURE,
    HOLDOUT_SPLIT,
    LABEL_KEY,
    PROBABILITIES_OUTPUT,
    SCHEMA_FILE,
    TEST_SPLIT,
    TRAIN_SPLIT,
)


def eval_config(accuracy_threshold: Any, class_recall_floor: float = 0.0) -> tfma.EvalConfig:
    """Accuracy overall and per class (sliced by label), and the paired outcomes against the served model.

    TFMA's thresholds: overall accuracy above `accuracy_threshold`, and every class's recall (the
    accuracy on its label slice) above `class_recall_floor`. No change threshold: whether the
    candidate beats the served model is the paired test's question (components/paired_blessing.py),
    decided from the PairedOutcomes counts computed here, overall and per label slice.
    """
    def above(bound: Any) -> tfma.MetricThreshold:
        return tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(lower_bound={"value": bound}))

    thresholds = [config_pb2.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                                     threshold=above(accuracy_threshold))]
    if class_recall_floor:
        thresholds.append(config_pb2.PerSliceMetricThreshold(
            slicing_specs=[tfma.SlicingSpec(feature_keys=[LABEL_KEY])], threshold=above(class_recall_floor)))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EVAL_SIGNATURE, label_key=LABEL_KEY,
                                    prediction_key=PROBABILITIES_OUTPUT)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[LABEL_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=thresholds),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
            tfma.MetricConfig(class_name="PairedOutcomes", module=paired_metric.__name__),
        ])])


class Stage:
    """A stage's components, in the order they were built (fields that hold a component)."""

    @property
    def components(self) -> list[BaseNode]:
        found: list[BaseNode] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            found += [v for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, BaseNode)]
        return found


@dataclasses.dataclass(frozen=True)
class DataIn(Stage):
    example_gen: Any
    schema_gen: Any
    statistics_gen: Any


@dataclasses.dataclass(frozen=True)
class Validation(Stage):
    example_validator: Any
    gate: Any
    span_steps: tuple[Any, ...]   # span mode: HoldoutExampleGen, SpanDrift, SpanWindow
    examples: Any                 # the Examples channel the later stages read (span mode: the window)


@dataclasses.dataclass(frozen=True)
class Preprocessing(Stage):
    transform: Any


@dataclasses.dataclass(frozen=True)
class Training(Stage):
    baseline: Any                 # the served model: what the candidate must beat, and the warm start
    tuner: Any                    # None unless tune=true
    trainer: Any


@dataclasses.dataclass(frozen=True)
class Release(Stage):
    evaluator: Any
    infra_validator: Any
    pusher: Any
    run_report: Any


def data_in(config: PipelineConfig) -> DataIn:
    """ExampleGen (whichever source config.data_format names), the schema, statistics."""
    example_gen = sources.example_gen(config)
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=os.path.join(config.schema_dir, SCHEMA_FILE)).with_id(contract.SCHEMA_GEN)
    # With the schema, TFDV treats the label as categorical (value counts per class), which the
    # class-balance drift check needs.
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"],
                                                  schema=schema_gen.outputs["schema"]
                                                  ).with_id(contract.STATISTICS_GEN)
    return DataIn(example_gen, schema_gen, statistics_gen)


def validation(config: PipelineConfig, data: DataIn, run_token: str) -> Validation:
    """Anomalies stop the run before Transform; in span mode also drift against the previous span,
    and the rolling window (+ the new span's test split and the fixed holdout) becomes the examples."""
    example_validator = tfx.components.ExampleValidator(
        statistics=data.statistics_gen.outputs["statistics"], schema=data.schema_gen.outputs["schema"]
    ).with_id(contract.EXAMPLE_VALIDATOR)
    gate = ValidationGate(anomalies=example_validator.outputs["anomalies"],
                          statistics=data.statistics_gen.outputs["statistics"],
                          schema=data.schema_gen.outputs["schema"], input_base=config.data_root,
                          examples=data.example_gen.outputs["examples"] if config.spans else None,
                          split_patterns=json.dumps(sources.split_patterns(config)),
                          row_lookup=sources.row_lookup(config)).with_id(contract.VALIDATION_GATE)
    if not config.spans:
        return Validation(example_validator, gate, (), data.example_gen.outputs["examples"])
    steps = span_steps(config, data, gate, run_token)
    return Validation(example_validator, gate, steps, steps[-1].outputs["window"])


def span_steps(config: PipelineConfig, data: DataIn, gate: Any, run_token: str) -> tuple[Any, Any, Any]:
    """(HoldoutExampleGen, SpanDrift, SpanWindow): the fixed holdout, the drift check against the
    previous span, and the rolling window Transform, Trainer and Evaluator read (components/spans.py)."""
    holdout_gen = sources.holdout_example_gen(config)
    examples, statistics = data.example_gen.outputs["examples"], data.statistics_gen.outputs["statistics"]
    drift = SpanDrift(examples=examples, statistics=statistics, schema=data.schema_gen.outputs["schema"],
                      span_store=config.span_store_dir, run_token=run_token).with_id(contract.SPAN_DRIFT)
    window = SpanWindow(examples=examples, statistics=statistics, holdout=holdout_gen.outputs["examples"],
                        span_store=config.span_store_dir, window_size=config.span_window,
                        run_token=run_token).with_id(contract.SPAN_WINDOW)
    # Only validated, non-drifting spans enter the store and the window.
    window.add_upstream_node(gate)
    window.add_upstream_node(drift)
    return holdout_gen, drift, window


def preprocessing(config: PipelineConfig, data: DataIn, checked: Validation) -> Preprocessing:
    """Transform, after the gate passed (components/preprocessing.py)."""
    transform = tfx.components.Transform(
        examples=checked.examples,
        schema=data.schema_gen.outputs["schema"],
        preprocessing_fn="components.preprocessing.preprocessing_fn",
        splits_config=tfx.proto.SplitsConfig(analyze=[TRAIN_SPLIT],
                                             transform=[TRAIN_SPLIT, TEST_SPLIT]),
        # Transform's own pre/post statistics are read by nothing here (StatisticsGen's are the
        # pipeline's), and on Beam's local runner they held both splits in memory: 8.38 GB of
        # Transform's peak at 10x data vs. 1.31 GB without (BENCHMARKS.md, "Scale").
        disable_statistics=True).with_id(contract.TRANSFORM)
    transform.add_upstream_node(checked.gate)
    return Preprocessing(transform)


def training(config: PipelineConfig, data: DataIn, prep: Preprocessing, run_token: str) -> Training:
    """The served model (baseline), the optional Tuner, the Trainer."""
    # What the candidate must beat: the model served now (empty on the first run); see
    # components/baseline.py for why this is not TFX's LatestBlessedModel resolver. In span mode it
    # is also the model the Trainer warm-starts from (components/training/warm_start.py).
    baseline = ServedModelBaseline(serving_model_dir=config.serving_model_dir,
                                   run_token=run_token).with_id(contract.BASELINE)
    # Warm start only in span mode, from the served model (the baseline step's output).
    warm_start = config.spans and config.training.warm_start
    transform = prep.transform

    # Optional hyperparameter search (components/training/tuner.py): on the train split only -- each trial
    # is scored on its validation slice, the rows early stopping holds out -- never the test split.
    tuner = None
    if config.tune:
        tuner = tfx.components.Tuner(
            tuner_fn="components.training.tuner.tuner_fn",
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=data.schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(splits=[TRAIN_SPLIT]),
            eval_args=tfx.proto.EvalArgs(splits=[TRAIN_SPLIT]),
            custom_config=config.tuner_config()).with_id(contract.TUNER)

    trainer = EpochsTrainer(
        run_fn="components.training.trainer.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=data.schema_gen.outputs["schema"],
        statistics=data.statistics_gen.outputs["statistics"],     # split size without a counting pass
        # Validation is carved out of the train split inside run_fn; the test split is only
        # drawn in the TensorBoard projector after training.
        train_args=tfx.proto.TrainArgs(splits=[TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[TEST_SPLIT]),
        custom_config=dataclasses.replace(config.training, warm_start=warm_start).to_custom_config(),
        epochs=config.training.epochs,
        base_model=baseline.outputs["baseline"] if warm_start else None,
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
    ).with_id(contract.TRAINER)
    return Training(baseline, tuner, trainer)


def release(config: PipelineConfig, data: DataIn, checked: Validation, trained: Training) -> Release:
    """Blessed on evidence, servable, pushed atomically; the run report."""
    model = trained.trainer.outputs["model"]
    evaluator = ThresholdEvaluator(
        examples=checked.examples,
        # Span mode: the new span's test split plus the fixed holdout, so a comparison with the
        # served model is never only on data that happens to suit one of them.
        example_splits=[TEST_SPLIT, HOLDOUT_SPLIT] if config.spans else [TEST_SPLIT],
        model=model,
        baseline_model=trained.baseline.outputs["baseline"],
        eval_config=eval_config(config.accuracy_threshold, config.class_recall_floor),
        accuracy_threshold=config.accuracy_threshold,
        decision_policy=config.decision_policy()).with_id(contract.EVALUATOR)

    # Servability: the candidate is loaded and queried by the model server binary production runs
    # (TF Serving where installed), and the copy with warm-up records is what gets pushed.
    infra_validator = LocalInfraValidator(
        model=model, examples=data.example_gen.outputs["examples"],
        model_name=config.model_name, split=TEST_SPLIT, num_examples=config.infra_num_examples,
        latency_p99_ms=config.infra_latency_p99_ms,
        latency_requests=config.infra_latency_requests).with_id(contract.INFRA_VALIDATOR)

    pusher = AtomicPusher(
        infra_blessing=infra_validator.outputs["blessing"],
        model_blessing=evaluator.outputs["blessing"],
        serving_model_dir=config.serving_model_dir).with_id(contract.PUSHER)

    run_report = RunReport(model=model, model_run=trained.trainer.outputs["model_run"],
                           evaluation=evaluator.outputs["evaluation"],
                           blessing=evaluator.outputs["blessing"],
                           examples=data.example_gen.outputs["examples"], test_split=TEST_SPLIT
                           ).with_id(contract.RUN_REPORT)
    return Release(evaluator, infra_validator, pusher, run_report)


def assemble(config: PipelineConfig, stages: Iterable[Stage], *, pipeline_root: str | None = None,
             metadata_connection_config: Any = None,
             beam_pipeline_args: list[str] | None = None) -> tfx.dsl.Pipeline:
    """A tfx Pipeline of the given stages' components, with config's name, root, cache and Beam args."""
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root or config.pipeline_root,
        components=[c for stage in stages for c in stage.components],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args or config.beam_args))


def data_stages(config: PipelineConfig, run_token: str | None = None) -> tuple[DataIn, Validation, Preprocessing]:
    """The stages up to Transform (what the model stages read)."""
    data = data_in(config)
    checked = validation(config, data, run_token or uuid.uuid4().hex)
    return data, checked, preprocessing(config, data, checked)


def create_pipeline(config: PipelineConfig, *, pipeline_root: str | None = None,
                    metadata_connection_config: Any = None, beam_pipeline_args: list[str] | None = None,
                    run_token: str | None = None) -> tfx.dsl.Pipeline:
    """The whole TFX pipeline for `config`.

    run_token makes the steps that must never be answered from the cache (the served-model
    baseline, the span steps) unique per run: a fresh UUID by default; Kubeflow passes KFP's
    run-id placeholder.
    """
    run_token = run_token or uuid.uuid4().hex
    data, checked, prep = data_stages(config, run_token)
    trained = training(config, data, prep, run_token)
    released = release(config, data, checked, trained)
    return assemble(config, [data, checked, prep, trained, released], pipeline_root=pipeline_root,
                    metadata_connection_config=metadata_connection_config, beam_pipeline_args=beam_pipeline_args)
