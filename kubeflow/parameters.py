"""The Kubeflow runtime parameters: one table, applied to the pipeline create_pipeline built.

A runtime parameter is a value a KFP run (or a recurring run) may set without recompiling: where
the data is, where models are served, how long to train, how good is good enough, where accepted
spans are kept. create_pipeline builds every value from the config; `apply` then replaces, in each
step that takes the value, the config's value by the RuntimeParameter (whose default is that same
value), so the DAG has one definition and the parameters live here, once each. A step property
listed here that does not hold the config's value -- a renamed property, a step that moved -- fails
the compile instead of silently leaving a step out.

Kubeflow can only fill top-level execution properties; the Trainer, Evaluator and Pusher carry
theirs as one extra property each (components/custom_components.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from pipeline.config import PipelineConfig
from schema import contract


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    ptype: type
    default: Callable[[PipelineConfig], Any]          # the config's value: the compiled default
    targets: tuple[tuple[str, str], ...]              # (component id, execution property) it fills
    applies: Callable[[PipelineConfig], bool] = lambda config: True


RUNTIME_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("data_root", str, lambda c: c.data_root,
                     ((contract.EXAMPLE_GEN, "input_base"), (contract.VALIDATION_GATE, "input_base"))),
    Parameter("serving_model_dir", str, lambda c: c.serving_model_dir,
                     ((contract.BASELINE, "serving_model_dir"), (contract.PUSHER, "serving_model_dir"))),
    Parameter("epochs", int, lambda c: c.training.epochs, ((contract.TRAINER, "epochs"),)),
    Parameter("accuracy_threshold", float, lambda c: c.accuracy_threshold,
                     ((contract.EVALUATOR, "accuracy_threshold"),)),
    # Continuous training: where accepted spans are kept (components/spans.py).
    Parameter("span_store", str, lambda c: c.span_store_dir,
                     ((contract.SPAN_DRIFT, "span_store"), (contract.SPAN_WINDOW, "span_store")),
                     applies=lambda c: c.spans),
)


def defaults(config: PipelineConfig) -> dict[str, Any]:
    """{name: default} of the parameters `config`'s pipeline has (the compiled defaults)."""
    return {p.name: p.default(config) for p in RUNTIME_PARAMETERS if p.applies(config)}


def apply(pipeline: Any, config: PipelineConfig) -> None:
    """Put each runtime parameter into the steps it fills, in place of the config's value."""
    from tfx import v1 as tfx

    steps = {component.id: component for component in pipeline.components}
    for parameter in RUNTIME_PARAMETERS:
        if not parameter.applies(config):
            continue
        default = parameter.default(config)
        value = tfx.dsl.experimental.RuntimeParameter(name=parameter.name, ptype=parameter.ptype, default=default)
        for step, key in parameter.targets:
            found = steps[step].exec_properties.get(key) if step in steps else None
            if found != default:
                raise RuntimeError(f"runtime parameter {parameter.name!r}: step {step!r} has no property {key!r} "
                                  f"holding the config's value {default!r} (found {found!r}); "
                                  "kubeflow/parameters.py and the DAG disagree")
            steps[step].exec_properties[key] = value
