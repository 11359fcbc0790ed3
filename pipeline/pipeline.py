"""The pipeline's DAG, built from a PipelineConfig; the one definition every runner uses.

LocalDagRunner runs it here; kubeflow/ compiles the very same function for Kubeflow Pipelines.

    FastCsvExampleGen -> StatisticsGen -> ExampleValidator(ImportSchemaGen) -> ValidationGate
      -> Transform -> [Tuner, with tune=true] -> Trainer
      -> Evaluator (vs. the served model) + InfraValidator -> AtomicPusher
"""
from __future__ import annotations

import dataclasses
import json
import os
import uuid
from typing import Any

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2
from tfx import v1 as tfx

from components import paired_metric
from components.baseline import ServedModelBaseline
from components.csv_example_gen import input_options
from components.custom_components import AtomicPusher, EpochsTrainer, FastCsvExampleGen, ThresholdEvaluator
from components.drift import SpanDrift
from components.infra_validator import LocalInfraValidator
from components.report_component import RunReport
from components.spans import SPAN_DIR_PATTERN, SpanWindow
from components.validation_gate import ValidationGate
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


def span_steps(config: PipelineConfig, example_gen: Any, statistics_gen: Any, schema_gen: Any, gate: Any,
               run_token: str, span_store: Any = None) -> list[Any]:
    """[HoldoutExampleGen, SpanDrift, SpanWindow]: the fixed holdout, the drift check against the
    previous span, and the rolling window Transform, Trainer and Evaluator read."""
    store = config.span_store_dir if span_store is None else span_store
    holdout_gen = FastCsvExampleGen(
        input_base=config.holdout_dir,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name=HOLDOUT_SPLIT, pattern=config.test_pattern)]),
        # One input split would be hash-partitioned into train/eval by default; keep it whole.
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name=HOLDOUT_SPLIT, hash_buckets=1)])),
        custom_config=input_options(file_counts={HOLDOUT_SPLIT: 1},
                                    max_duplicate_share=config.max_duplicate_share),
    ).with_id(contract.HOLDOUT_EXAMPLE_GEN)
    drift = SpanDrift(examples=example_gen.outputs["examples"], statistics=statistics_gen.outputs["statistics"],
                      schema=schema_gen.outputs["schema"], span_store=store,
                      run_token=run_token).with_id(contract.SPAN_DRIFT)
    window = SpanWindow(examples=example_gen.outputs["examples"], statistics=statistics_gen.outputs["statistics"],
                        holdout=holdout_gen.outputs["examples"], span_store=store,
                        window_size=config.span_window, run_token=run_token).with_id(contract.SPAN_WINDOW)
    # Only validated, non-drifting spans enter the store and the window.
    window.add_upstream_node(gate)
    window.add_upstream_node(drift)
    return [holdout_gen, drift, window]


def create_pipeline(config: PipelineConfig, *, data_root: Any = None, serving_model_dir: Any = None,
                    epochs: Any = None, accuracy_threshold: Any = None,
                    pipeline_root: str | None = None, metadata_connection_config: Any = None,
                    beam_pipeline_args: list[str] | None = None,
                    run_token: str | None = None, data_only: bool = False,
                    span_store: Any = None) -> tfx.dsl.Pipeline:
    """The TFX pipeline for `config`.

    The keyword arguments let a runner replace a config value with a runtime parameter (Kubeflow)
    without a second pipeline definition; by default everything comes from `config`.
    run_token makes the baseline step's cache key unique per run (default: a fresh UUID; Kubeflow
    passes KFP's run-id placeholder).
    data_only stops after Transform (the data components, e.g. to benchmark Beam runners).
    span_store replaces config.span_store_dir (span mode, see components/spans.py).
    """
    data_root = config.data_root if data_root is None else data_root
    serving_model_dir = config.serving_model_dir if serving_model_dir is None else serving_model_dir
    accuracy_threshold = config.accuracy_threshold if accuracy_threshold is None else accuracy_threshold
    epochs = config.training.epochs if epochs is None else epochs
    # Warm start only in span mode, from the served model (the baseline step's output).
    warm_start = config.spans and config.training.warm_start
    training = dataclasses.replace(config.training, warm_start=warm_start)

    run_token = run_token or uuid.uuid4().hex
    # Span mode: only the newest span directory is parsed (TFX's driver resolves {SPAN}).
    span_dir = f"{SPAN_DIR_PATTERN}/" if config.spans else ""
    example_gen = FastCsvExampleGen(
        input_base=data_root,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name=TRAIN_SPLIT, pattern=span_dir + config.train_pattern),
            tfx.proto.Input.Split(name=TEST_SPLIT, pattern=span_dir + config.test_pattern),
        ]),
        custom_config=input_options(**config.data_input_options())).with_id(contract.EXAMPLE_GEN)
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=os.path.join(config.schema_dir, SCHEMA_FILE)).with_id(contract.SCHEMA_GEN)
    # With the schema, TFDV treats the label as categorical (value counts per class), which the
    # class-balance drift check needs.
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"],
                                                  schema=schema_gen.outputs["schema"]
                                                  ).with_id(contract.STATISTICS_GEN)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    ).with_id(contract.EXAMPLE_VALIDATOR)
    gate = ValidationGate(anomalies=example_validator.outputs["anomalies"],
                          statistics=statistics_gen.outputs["statistics"],
                          schema=schema_gen.outputs["schema"], input_base=data_root,
                          examples=example_gen.outputs["examples"] if config.spans else None,
                          split_patterns=json.dumps({TRAIN_SPLIT: span_dir + config.train_pattern,
                                                     TEST_SPLIT: span_dir + config.test_pattern})
                          ).with_id(contract.VALIDATION_GATE)
    examples = example_gen.outputs["examples"]
    span_components: list[Any] = []
    if config.spans:
        # components/spans.py: drift vs. the previous span, then the rolling window of stored spans
        # (+ the new span's test split and the fixed holdout) is what Transform and Evaluator read.
        span_components = span_steps(config, example_gen, statistics_gen, schema_gen, gate, run_token,
                                     span_store=span_store)
        examples = span_components[-1].outputs["window"]

    transform = tfx.components.Transform(
        examples=examples,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn="components.preprocessing.preprocessing_fn",
        splits_config=tfx.proto.SplitsConfig(analyze=[TRAIN_SPLIT],
                                             transform=[TRAIN_SPLIT, TEST_SPLIT]),
        # Transform's own pre/post statistics are read by nothing here (StatisticsGen's are the
        # pipeline's), and on Beam's local runner they held both splits in memory: 8.38 GB of
        # Transform's peak at 10x data vs. 1.31 GB without (BENCHMARKS.md, "Scale").
        disable_statistics=True).with_id(contract.TRANSFORM)
    transform.add_upstream_node(gate)
    data_components = [example_gen, statistics_gen, schema_gen, example_validator, gate,
                       *span_components, transform]
    if data_only:
        return tfx.dsl.Pipeline(
            pipeline_name=config.pipeline_name, pipeline_root=pipeline_root or config.pipeline_root,
            components=data_components, enable_cache=config.enable_cache,
            metadata_connection_config=metadata_connection_config,
            beam_pipeline_args=list(beam_pipeline_args or config.beam_args))

    # What the candidate must beat: the model served now (empty on the first run); see
    # components/baseline.py for why this is not TFX's LatestBlessedModel resolver. In span mode it
    # is also the model the Trainer warm-starts from (components/warm_start.py).
    baseline = ServedModelBaseline(serving_model_dir=serving_model_dir,
                                   run_token=run_token).with_id(contract.BASELINE)

    # Optional hyperparameter search (components/tuner.py): on the train split only -- each trial
    # is scored on its validation slice, the rows early stopping holds out -- never the test split.
    tuner = None
    if config.tune:
        tuner = tfx.components.Tuner(
            tuner_fn="components.tuner.tuner_fn",
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(splits=[TRAIN_SPLIT]),
            eval_args=tfx.proto.EvalArgs(splits=[TRAIN_SPLIT]),
            custom_config=config.tuner_config()).with_id(contract.TUNER)

    trainer = EpochsTrainer(
        run_fn="components.trainer.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        statistics=statistics_gen.outputs["statistics"],     # split size without a counting pass
        # Validation is carved out of the train split inside run_fn; the test split is only
        # drawn in the TensorBoard projector after training.
        train_args=tfx.proto.TrainArgs(splits=[TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[TEST_SPLIT]),
        custom_config=training.to_custom_config(), epochs=epochs,
        base_model=baseline.outputs["baseline"] if warm_start else None,
        hyperparameters=tuner.outputs["best_hyperparameters"] if tuner else None,
    ).with_id(contract.TRAINER)

    evaluator = ThresholdEvaluator(
        examples=examples,
        # Span mode: the new span's test split plus the fixed holdout, so a comparison with the
        # served model is never only on data that happens to suit one of them.
        example_splits=[TEST_SPLIT, HOLDOUT_SPLIT] if config.spans else [TEST_SPLIT],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["baseline"],
        eval_config=eval_config(config.accuracy_threshold, config.class_recall_floor),
        accuracy_threshold=accuracy_threshold,
        decision_policy=config.decision_policy()).with_id(contract.EVALUATOR)

    # Servability: the candidate is loaded and queried by the model server binary production runs
    # (TF Serving where installed), and the copy with warm-up records is what gets pushed.
    infra_validator = LocalInfraValidator(
        model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
        model_name=config.model_name, split=TEST_SPLIT, num_examples=config.infra_num_examples,
        latency_p99_ms=config.infra_latency_p99_ms,
        latency_requests=config.infra_latency_requests).with_id(contract.INFRA_VALIDATOR)

    pusher = AtomicPusher(
        infra_blessing=infra_validator.outputs["blessing"],
        model_blessing=evaluator.outputs["blessing"],
        serving_model_dir=serving_model_dir).with_id(contract.PUSHER)

    run_report = RunReport(model=trainer.outputs["model"], model_run=trainer.outputs["model_run"],
                           evaluation=evaluator.outputs["evaluation"],
                           blessing=evaluator.outputs["blessing"],
                           examples=example_gen.outputs["examples"], test_split=TEST_SPLIT
                           ).with_id(contract.RUN_REPORT)

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=pipeline_root or config.pipeline_root,
        components=[*data_components, *([tuner] if tuner else []), baseline, trainer, evaluator, infra_validator,
                    pusher, run_report],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args or config.beam_args))
