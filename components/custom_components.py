"""Stock TFX components with this project's executors swapped in.

Subclassing keeps each component's spec, artifacts and driver (span/version resolution, blessing
inputs) exactly as in TFX, so every downstream tool and the Kubeflow compiler treat them as the
stock ones.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from tfx import types as tfx_types, v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils, proto_utils

from components import pusher
from components.baseline import has_saved_model
from components.data_input import csv_example_gen
from components.decision import DecisionPolicy
from components.paired_blessing import amend_blessing
from schema.contract import TRAIN_SPLIT


class FastCsvExampleGen(tfx.components.CsvExampleGen):
    """CsvExampleGen reading integer CSVs (plain or .gz) exactly with NumPy; see csv_example_gen.

    Takes FileBasedExampleGen's `custom_config` (which CsvExampleGen does not pass on): the
    expected file count per split and the duplicate-image limit (csv_example_gen.input_options).
    """
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(csv_example_gen.Executor)

    def __init__(self, *, input_base: Any, input_config: Any, custom_config: Any = None,
                 output_config: Any = None) -> None:
        FileBasedExampleGen.__init__(self, input_base=input_base, input_config=input_config,
                                     custom_config=custom_config, output_config=output_config)


# --- Stock components with one more execution property --------------------------------------------
# Kubeflow runtime parameters can only fill top-level execution properties, while epochs live in
# the Trainer's custom_config, the accuracy threshold inside the Evaluator's EvalConfig and the
# serving directory inside the Pusher's PushDestination. These subclasses add that value as its own
# (optional, runtime-parameterisable) property; their executors fold it back into the stock
# property before running the stock executor, so artifacts and behaviour stay TFX's own.

EPOCHS_KEY, THRESHOLD_KEY, SERVING_DIR_KEY = "epochs", "accuracy_threshold", "serving_model_dir"
POLICY_KEY = "decision_policy"   # Evaluator: components/decision.DecisionPolicy as JSON


# Optional Trainer input: the training data's statistics, so run_fn knows the split's size
# (TFDV num_examples) without a pass over the data; folded into custom_config as TRAIN_EXAMPLES_KEY.
STATISTICS_KEY, TRAIN_EXAMPLES_KEY = "statistics", "train_examples"


class _TrainerSpec(specs.TrainerSpec):
    PARAMETERS = {**specs.TrainerSpec.PARAMETERS, EPOCHS_KEY: ExecutionParameter(type=int, optional=True)}
    INPUTS = {**specs.TrainerSpec.INPUTS,
              STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True)}


def train_examples(statistics: list[Any], train_args_json: str | None) -> int | None:
    """Examples in the Trainer's training splits, from StatisticsGen's TFDV statistics."""
    from tfx.components.statistics_gen import stats_artifact_utils

    if not statistics:
        return None
    train_args = tfx.proto.TrainArgs()
    proto_utils.json_to_proto(train_args_json or "{}", train_args)
    total = 0
    for split in train_args.splits or [TRAIN_SPLIT]:
        stats = stats_artifact_utils.load_statistics(artifact_utils.get_single_instance(statistics), split)
        total += sum(d.num_examples for d in stats.proto().datasets)
    return total


def fold_trainer_inputs(input_dict: dict, exec_properties: dict[str, Any]) -> tuple[dict, dict[str, Any]]:
    """(inputs, properties) TFX's own Trainer executor takes: `epochs` and the statistics' split size
    folded into custom_config, the statistics input and the epochs property removed.

    Done once, where the step runs, so replicas started elsewhere (a Vertex CustomJob, a TFJob) run
    TFX's plain GenericExecutor on the same resolved values."""
    props = dict(exec_properties)
    input_dict = dict(input_dict)
    epochs = props.pop(EPOCHS_KEY, None)
    examples = train_examples(input_dict.pop(STATISTICS_KEY, None) or [], props.get(specs.TRAIN_ARGS_KEY))
    if epochs or examples:
        config = json_utils.loads(props.get(specs.CUSTOM_CONFIG_KEY) or "null") or {}
        if epochs:
            config["epochs"] = int(epochs)
        if examples:
            config[TRAIN_EXAMPLES_KEY] = examples
        props[specs.CUSTOM_CONFIG_KEY] = json_utils.dumps(config)
    return input_dict, props


class _EpochsTrainerExecutor(trainer_executor.GenericExecutor):
    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict[str, Any]) -> None:
        input_dict, props = fold_trainer_inputs(input_dict, exec_properties)
        return super().Do(input_dict, output_dict, props)


class VertexTrainerExecutor(vertex_trainer_executor.GenericExecutor):
    """TFX's Vertex training extension's executor (what tfx.extensions.google_cloud_ai_platform.Trainer
    runs) behind EpochsTrainer's spec: the step folds `epochs` and the statistics in, then the
    extension submits the CustomJob (worker pools from custom_config's ai_platform_training_args)
    whose replicas run TFX's GenericExecutor -- the same run_fn -- and waits for it."""

    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict[str, Any]) -> None:
        input_dict, props = fold_trainer_inputs(input_dict, exec_properties)
        return super().Do(input_dict, output_dict, props)


class EpochsTrainer(tfx.components.Trainer):
    """Trainer with `epochs` as its own property (overrides custom_config['epochs']) and optional
    `statistics` of its examples (their training-split size reaches run_fn as `train_examples`).
    `base_model` (TFX's own input) is the served model a span run warm-starts from; `hyperparameters`
    (TFX's own input too) the Tuner's best values, which run_fn applies over custom_config."""
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(_EpochsTrainerExecutor)

    def __init__(self, *, examples: Any, transform_graph: Any, schema: Any, train_args: Any,
                 eval_args: Any, run_fn: str, custom_config: dict, epochs: Any = None,
                 statistics: Any = None, base_model: Any = None, hyperparameters: Any = None) -> None:
        spec = _TrainerSpec(
            examples=examples, transform_graph=transform_graph, schema=schema, statistics=statistics,
            base_model=base_model, hyperparameters=hyperparameters,
            train_args=train_args, eval_args=eval_args, run_fn=run_fn,
            custom_config=json_utils.dumps(custom_config), epochs=epochs,
            model=tfx_types.Channel(type=standard_artifacts.Model),
            model_run=tfx_types.Channel(type=standard_artifacts.ModelRun))
        base_component.BaseComponent.__init__(self, spec=spec)


class _EvaluatorSpec(specs.EvaluatorSpec):
    PARAMETERS = {**specs.EvaluatorSpec.PARAMETERS, THRESHOLD_KEY: ExecutionParameter(type=float, optional=True),
                  POLICY_KEY: ExecutionParameter(type=str, optional=True)}


def set_lower_bounds(eval_config_json: str, value: float) -> str:
    """The overall slice's value_threshold.lower_bound(s) in the EvalConfig JSON set to `value`.

    Only thresholds whose slicing specs are all the overall slice: the per-class recall floors
    (thresholds on the label slices) keep their own value.
    """
    config = json.loads(eval_config_json)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("per_slice_thresholds", "perSliceThresholds"):
                for per_slice in node.get(key, []):
                    specs_ = per_slice.get("slicing_specs", per_slice.get("slicingSpecs", [{}]))
                    bound = per_slice.get("threshold", {})
                    bound = bound.get("value_threshold", bound.get("valueThreshold", {}))
                    if all(not spec for spec in specs_):
                        for name in ("lower_bound", "lowerBound"):
                            if name in bound:
                                bound[name] = value
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(config)
    return json.dumps(config)


class _ThresholdEvaluatorExecutor(evaluator_executor.Executor):
    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict[str, Any]) -> None:
        # ServedModelBaseline always emits an artifact (Kubeflow outputs cannot be absent); one
        # without a SavedModel means nothing is served yet, i.e. evaluate without a baseline.
        baselines = input_dict.get(specs.BASELINE_MODEL_KEY) or []
        if baselines and not all(has_saved_model(a.uri) for a in baselines):
            input_dict = {**input_dict, specs.BASELINE_MODEL_KEY: []}
        props = dict(exec_properties)
        threshold = props.pop(THRESHOLD_KEY, None)
        policy = DecisionPolicy(**json.loads(props.pop(POLICY_KEY, None) or "{}"))
        if threshold is not None and props.get(specs.EVAL_CONFIG_KEY):
            props[specs.EVAL_CONFIG_KEY] = set_lower_bounds(props[specs.EVAL_CONFIG_KEY], float(threshold))
        super().Do(input_dict, output_dict, props)
        # TFMA's thresholds have decided; the paired test against the served model amends it.
        amend_blessing(artifact_utils.get_single_instance(output_dict[specs.BLESSING_KEY]),
                       artifact_utils.get_single_uri(output_dict[specs.EVALUATION_KEY]),
                       has_baseline=bool(input_dict.get(specs.BASELINE_MODEL_KEY)), policy=policy)


class ThresholdEvaluator(tfx.components.Evaluator):
    """Evaluator with the blessing threshold and the paired-decision policy as its own properties
    (the threshold overrides the EvalConfig's overall bound; components/paired_blessing.py)."""
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(_ThresholdEvaluatorExecutor)

    def __init__(self, *, examples: Any, model: Any, baseline_model: Any, eval_config: Any,
                 example_splits: list[str], accuracy_threshold: Any = None,
                 decision_policy: DecisionPolicy | None = None) -> None:
        spec = _EvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, eval_config=eval_config,
            example_splits=json_utils.dumps(example_splits), accuracy_threshold=accuracy_threshold,
            decision_policy=json.dumps(dataclasses.asdict(decision_policy or DecisionPolicy()), sort_keys=True),
            fairness_indicator_thresholds=json_utils.dumps(None),
            evaluation=tfx_types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=tfx_types.Channel(type=standard_artifacts.ModelBlessing))
        base_component.BaseComponent.__init__(self, spec=spec)


class _PusherSpec(specs.PusherSpec):
    PARAMETERS = {**specs.PusherSpec.PARAMETERS, SERVING_DIR_KEY: ExecutionParameter(type=str, optional=True)}


class _AtomicPusherExecutor(pusher.Executor):
    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict[str, Any]) -> None:
        props = dict(exec_properties)
        serving_dir = props.pop(SERVING_DIR_KEY, None)
        if serving_dir:
            destination = tfx.proto.PushDestination()
            proto_utils.json_to_proto(props[specs.PUSH_DESTINATION_KEY], destination)
            destination.filesystem.base_directory = serving_dir
            props[specs.PUSH_DESTINATION_KEY] = proto_utils.proto_to_json(destination)
        return super().Do(input_dict, output_dict, props)


class AtomicPusher(tfx.components.Pusher):
    """Pusher whose new version directory appears by one rename, after a load check
    (components/pusher.py), with the serving model directory as its own property."""
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(_AtomicPusherExecutor)

    def __init__(self, *, model_blessing: Any, serving_model_dir: Any, model: Any = None,
                 infra_blessing: Any = None) -> None:
        spec = _PusherSpec(
            model=model, model_blessing=model_blessing, infra_blessing=infra_blessing,
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(base_directory="")),
            custom_config=json_utils.dumps(None), serving_model_dir=serving_model_dir,
            pushed_model=tfx_types.Channel(type=standard_artifacts.PushedModel))
        base_component.BaseComponent.__init__(self, spec=spec)
