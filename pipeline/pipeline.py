"""The pipeline's DAG, built from a PipelineConfig; the one definition every runner uses.

LocalDagRunner runs it here; kubeflow/ compiles the very same function for Kubeflow Pipelines.

    FastCsvExampleGen -> StatisticsGen -> ExampleValidator(ImportSchemaGen) -> ValidationGate
      -> Transform -> Trainer -> Evaluator (vs. the served model) + InfraValidator -> AtomicPusher
"""
from __future__ import annotations

import json
import os
import uuid
from typing import Any

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2
from tfx import v1 as tfx

from components.baseline import ServedModelBaseline
from components.csv_example_gen import input_options
from components.custom_components import AtomicPusher, EpochsTrainer, FastCsvExampleGen, ThresholdEvaluator
from components.infra_validator import LocalInfraValidator
from components.report_component import RunReport
from components.validation_gate import ValidationGate
from pipeline.config import PipelineConfig
from schema import contract
from schema.contract import EVAL_SIGNATURE, LABEL_KEY, PROBABILITIES_OUTPUT, SCHEMA_FILE, TEST_SPLIT, TRAIN_SPLIT


def eval_config(accuracy_threshold: Any) -> tfma.EvalConfig:
    """Accuracy overall and per class (sliced by label); bless above the threshold, no regression."""
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": accuracy_threshold}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -1e-10}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EVAL_SIGNATURE, label_key=LABEL_KEY,
                                    prediction_key=PROBABILITIES_OUTPUT)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[LABEL_KEY])],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            # Thresholds on the overall slice only: per-class accuracy is reported, not gated.
            tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=[
                config_pb2.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)]),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ])])


def create_pipeline(config: PipelineConfig, *, data_root: Any = None, serving_model_dir: Any = None,
                    epochs: Any = None, accuracy_threshold: Any = None,
                    pipeline_root: str | None = None, metadata_connection_config: Any = None,
                    beam_pipeline_args: list[str] | None = None,
                    run_token: str | None = None, data_only: bool = False) -> tfx.dsl.Pipeline:
    """The TFX pipeline for `config`.

    The keyword arguments let a runner replace a config value with a runtime parameter (Kubeflow)
    without a second pipeline definition; by default everything comes from `config`.
    run_token makes the baseline step's cache key unique per run (default: a fresh UUID; Kubeflow
    passes KFP's run-id placeholder).
    data_only stops after Transform (the data components, e.g. to benchmark Beam runners).
    """
    data_root = config.data_root if data_root is None else data_root
    serving_model_dir = config.serving_model_dir if serving_model_dir is None else serving_model_dir
    accuracy_threshold = config.accuracy_threshold if accuracy_threshold is None else accuracy_threshold
    epochs = config.training.epochs if epochs is None else epochs

    example_gen = FastCsvExampleGen(
        input_base=data_root,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name=TRAIN_SPLIT, pattern=config.train_pattern),
            tfx.proto.Input.Split(name=TEST_SPLIT, pattern=config.test_pattern),
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
                          split_patterns=json.dumps({TRAIN_SPLIT: config.train_pattern,
                                                     TEST_SPLIT: config.test_pattern})
                          ).with_id(contract.VALIDATION_GATE)

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn="components.preprocessing.preprocessing_fn",
        splits_config=tfx.proto.SplitsConfig(analyze=[TRAIN_SPLIT],
                                             transform=[TRAIN_SPLIT, TEST_SPLIT]),
        # Transform's own pre/post statistics are read by nothing here (StatisticsGen's are the
        # pipeline's), and on Beam's local runner they held both splits in memory: 8.38 GB of
        # Transform's peak at 10x data vs. 1.31 GB without (BENCHMARKS.md, "Scale").
        disable_statistics=True).with_id(contract.TRANSFORM)
    transform.add_upstream_node(gate)
    data_components = [example_gen, statistics_gen, schema_gen, example_validator, gate, transform]
    if data_only:
        return tfx.dsl.Pipeline(
            pipeline_name=config.pipeline_name, pipeline_root=pipeline_root or config.pipeline_root,
            components=data_components, enable_cache=config.enable_cache,
            metadata_connection_config=metadata_connection_config,
            beam_pipeline_args=list(beam_pipeline_args or config.beam_args))

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
        custom_config=config.training.to_custom_config(), epochs=epochs).with_id(contract.TRAINER)

    # What the candidate must beat: the model served now (empty on the first run); see
    # components/baseline.py for why this is not TFX's LatestBlessedModel resolver.
    baseline = ServedModelBaseline(serving_model_dir=serving_model_dir,
                                   run_token=run_token or uuid.uuid4().hex).with_id(contract.BASELINE)

    evaluator = ThresholdEvaluator(
        examples=example_gen.outputs["examples"],
        example_splits=[TEST_SPLIT],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["baseline"],
        eval_config=eval_config(config.accuracy_threshold),
        accuracy_threshold=accuracy_threshold).with_id(contract.EVALUATOR)

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
        components=[example_gen, statistics_gen, schema_gen, example_validator, gate, transform,
                    trainer, baseline, evaluator, infra_validator, pusher, run_report],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args or config.beam_args))
