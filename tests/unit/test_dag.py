"""The DAG create_pipeline builds, without running it: which components, and which one consumes
which one's outputs, for the default config, with the Tuner, and in span mode.

The expected wiring is written out edge by edge (consumer input <- producer output), so a step
reading the wrong artifact -- the Evaluator reading the raw span instead of the window, the Trainer
losing the Tuner's values -- fails here in seconds instead of in a pipeline run.
"""
from __future__ import annotations

from typing import Any

import pytest

from pipeline.config import load_config
from schema import contract as c

# consumer -> {input key: (producer, output key)}; components without inputs have no row.
DEFAULT_EDGES: dict[str, dict[str, tuple[str, str]]] = {
    c.STATISTICS_GEN: {"examples": (c.EXAMPLE_GEN, "examples"), "schema": (c.SCHEMA_GEN, "schema")},
    c.EXAMPLE_VALIDATOR: {"statistics": (c.STATISTICS_GEN, "statistics"), "schema": (c.SCHEMA_GEN, "schema")},
    c.VALIDATION_GATE: {"anomalies": (c.EXAMPLE_VALIDATOR, "anomalies"), "statistics": (c.STATISTICS_GEN, "statistics"),
                        "schema": (c.SCHEMA_GEN, "schema")},
    c.TRANSFORM: {"examples": (c.EXAMPLE_GEN, "examples"), "schema": (c.SCHEMA_GEN, "schema")},
    c.TRAINER: {"examples": (c.TRANSFORM, "transformed_examples"), "transform_graph": (c.TRANSFORM, "transform_graph"),
                "schema": (c.SCHEMA_GEN, "schema"), "statistics": (c.STATISTICS_GEN, "statistics")},
    c.EVALUATOR: {"examples": (c.EXAMPLE_GEN, "examples"), "model": (c.TRAINER, "model"),
                  "baseline_model": (c.BASELINE, "baseline")},
    c.INFRA_VALIDATOR: {"model": (c.TRAINER, "model"), "examples": (c.EXAMPLE_GEN, "examples")},
    c.PUSHER: {"infra_blessing": (c.INFRA_VALIDATOR, "blessing"), "model_blessing": (c.EVALUATOR, "blessing")},
    c.RUN_REPORT: {"model": (c.TRAINER, "model"), "model_run": (c.TRAINER, "model_run"),
                   "evaluation": (c.EVALUATOR, "evaluation"), "blessing": (c.EVALUATOR, "blessing"),
                   "examples": (c.EXAMPLE_GEN, "examples")},
}
# Order without data: consumer -> the steps it waits for beyond its inputs' producers.
DEFAULT_AFTER: dict[str, set[str]] = {c.TRANSFORM: {c.VALIDATION_GATE}}

TUNE_EDGES = {
    **DEFAULT_EDGES,
    c.TUNER: {"examples": (c.TRANSFORM, "transformed_examples"), "transform_graph": (c.TRANSFORM, "transform_graph"),
              "schema": (c.SCHEMA_GEN, "schema")},
    c.TRAINER: {**DEFAULT_EDGES[c.TRAINER], "hyperparameters": (c.TUNER, "best_hyperparameters")},
}

WINDOW = (c.SPAN_WINDOW, "window")
SPAN_EDGES = {
    **DEFAULT_EDGES,
    # the gate reads the ingested span's number to find its files
    c.VALIDATION_GATE: {**DEFAULT_EDGES[c.VALIDATION_GATE], "examples": (c.EXAMPLE_GEN, "examples")},
    c.SPAN_DRIFT: {"examples": (c.EXAMPLE_GEN, "examples"), "statistics": (c.STATISTICS_GEN, "statistics"),
                   "schema": (c.SCHEMA_GEN, "schema")},
    c.SPAN_WINDOW: {"examples": (c.EXAMPLE_GEN, "examples"), "statistics": (c.STATISTICS_GEN, "statistics"),
                    "holdout": (c.HOLDOUT_EXAMPLE_GEN, "examples")},
    # Transform and the Evaluator read the rolling window, not the raw span ...
    c.TRANSFORM: {**DEFAULT_EDGES[c.TRANSFORM], "examples": WINDOW},
    c.EVALUATOR: {**DEFAULT_EDGES[c.EVALUATOR], "examples": WINDOW},
    # ... and the Trainer warm-starts from the served model.
    c.TRAINER: {**DEFAULT_EDGES[c.TRAINER], "base_model": (c.BASELINE, "baseline")},
}
SPAN_AFTER = {**DEFAULT_AFTER, c.SPAN_WINDOW: {c.VALIDATION_GATE, c.SPAN_DRIFT}}


def wiring(pipeline: Any) -> tuple[dict[str, dict[str, tuple[str, str]]], dict[str, set[str]]]:
    """(consumer -> {input: (producer, output)}, consumer -> upstream steps that are not producers)."""
    edges: dict[str, dict[str, tuple[str, str]]] = {}
    after: dict[str, set[str]] = {}
    for component in pipeline.components:
        inputs = {key: (channel.producer_component_id, channel.output_key)
                  for key, channel in component.inputs.items()}
        if inputs:
            edges[component.id] = inputs
        producers = {producer for producer, _ in inputs.values()}
        extra = {node.id for node in component.upstream_nodes} - producers
        if extra:
            after[component.id] = extra
    return edges, after


def build(**overrides: Any) -> Any:
    from pipeline.pipeline import create_pipeline

    config = load_config("sample", overrides={"data_root": "/nonexistent/data", **overrides})
    return create_pipeline(config, run_token="token")


@pytest.mark.parametrize("overrides, ids, edges, after", [
    ({}, c.COMPONENT_IDS, DEFAULT_EDGES, DEFAULT_AFTER),
    ({"tune": "true"}, (*c.COMPONENT_IDS, c.TUNER), TUNE_EDGES, DEFAULT_AFTER),
    ({"spans": "true"}, (*c.COMPONENT_IDS, *c.SPAN_COMPONENT_IDS), SPAN_EDGES, SPAN_AFTER),
], ids=["default", "tune", "spans"])
def test_components_and_edges(overrides, ids, edges, after):
    pipeline = build(**overrides)
    assert sorted(component.id for component in pipeline.components) == sorted(ids)
    assert wiring(pipeline) == (edges, after)


def test_a_wrong_edge_is_seen():
    """The comparison above sees a miswired step: the Evaluator of a span run fed the raw span."""
    pipeline = build(spans="true")
    evaluator = next(component for component in pipeline.components if component.id == c.EVALUATOR)
    example_gen = next(component for component in pipeline.components if component.id == c.EXAMPLE_GEN)
    evaluator.inputs["examples"] = example_gen.outputs["examples"]
    assert wiring(pipeline)[0][c.EVALUATOR]["examples"] == (c.EXAMPLE_GEN, "examples") != WINDOW


def test_the_data_stages_alone_end_at_transform():
    """What the data benchmarks compose (benchmarks/common.py, data_pipeline): no model steps."""
    from pipeline.pipeline import assemble, data_stages

    config = load_config("sample", overrides={"data_root": "/nonexistent/data"})
    pipeline = assemble(config, data_stages(config))
    assert [component.id for component in pipeline.components] == [
        c.EXAMPLE_GEN, c.SCHEMA_GEN, c.STATISTICS_GEN, c.EXAMPLE_VALIDATOR, c.VALIDATION_GATE, c.TRANSFORM]


def test_the_data_source_is_chosen_by_data_format():
    """One ExampleGen id whatever the source; the gate looks up rows only where the source can."""
    from tfx.components import ImportExampleGen

    from components.custom_components import FastCsvExampleGen

    def steps(**overrides: Any) -> dict[str, Any]:
        return {component.id: component for component in build(**overrides).components}

    csv, tfrecord = steps(), steps(data_format="tfrecord", train_pattern="*_train.tfrecord*",
                                   test_pattern="*_test.tfrecord*")
    assert type(csv[c.EXAMPLE_GEN]) is FastCsvExampleGen and type(tfrecord[c.EXAMPLE_GEN]) is ImportExampleGen
    row_lookup = "components.data_input.csv_example_gen.offending_cells"
    assert csv[c.VALIDATION_GATE].exec_properties["row_lookup"] == row_lookup
    assert tfrecord[c.VALIDATION_GATE].exec_properties["row_lookup"] == ""
    holdout = steps(data_format="tfrecord", spans="true", train_pattern="a", test_pattern="b")[c.HOLDOUT_EXAMPLE_GEN]
    assert type(holdout) is ImportExampleGen


@pytest.mark.parametrize("spans", [False, True])
def test_kubeflow_runtime_parameters_fill_the_steps_of_their_table(spans):
    """kubeflow/parameters.py: each parameter replaces the config's value in exactly its steps."""
    from tfx.orchestration.data_types import RuntimeParameter

    from kubeflow.parameters import RUNTIME_PARAMETERS, apply, defaults

    config = load_config("sample", overrides={"data_root": "/nonexistent/data", "spans": str(spans)})
    from pipeline.pipeline import create_pipeline

    pipeline = create_pipeline(config, run_token="token")
    apply(pipeline, config)
    filled = {(component.id, key): value.name for component in pipeline.components
              for key, value in component.exec_properties.items() if isinstance(value, RuntimeParameter)}
    expected = {target: p.name for p in RUNTIME_PARAMETERS if p.applies(config) for target in p.targets}
    assert filled == expected
    assert set(defaults(config)) == set(expected.values()) == (
        {"data_root", "serving_model_dir", "epochs", "accuracy_threshold"} | ({"span_store"} if spans else set()))
