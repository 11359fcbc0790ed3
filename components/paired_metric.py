"""PairedOutcomes: a TFMA metric counting, per slice, the rows each of two models gets right.

TFMA compares a candidate with a baseline only through per-model aggregates (a metric's value and
its difference) or, for binary models, flip rates (tfma.metrics.BooleanFlipRates). The paired
test of components/decision.py needs, for a multi-class model, how many rows only the candidate
classifies correctly and how many only the baseline does -- so this metric walks each example
once with both models' predictions, the way TFMA's own flip_metrics.py combiner does, and emits
four counts for the candidate model. As a TFMA metric it is sliced like every other (overall and
per label: the per-class counts), runs on whatever Beam runner the Evaluator uses, and lands in
the evaluation artifact beside the other metrics.

Used by name in the EvalConfig: MetricConfig(class_name="PairedOutcomes", module=__name__).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2
from tensorflow_model_analysis.utils import model_util

from schema.contract import (
    PAIRED_BOTH_RIGHT_METRIC,
    PAIRED_BOTH_WRONG_METRIC,
    PAIRED_ONLY_CANDIDATE_METRIC,
    PAIRED_ONLY_SERVED_METRIC,
)

METRIC_NAME = "paired_outcomes"
COUNT_NAMES = (PAIRED_BOTH_RIGHT_METRIC, PAIRED_ONLY_CANDIDATE_METRIC, PAIRED_ONLY_SERVED_METRIC,
               PAIRED_BOTH_WRONG_METRIC)


@dataclasses.dataclass
class _Counts:
    values: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(4))  # in COUNT_NAMES' order


class _PairedOutcomesCombiner(beam.CombineFn):
    """Per example: is the top class right for the candidate, for the baseline? Four weighted counts."""

    def __init__(self, keys: list[metric_types.MetricKey], eval_config: config_pb2.EvalConfig,
                 model_name: str, baseline_name: str, output_name: str, example_weighted: bool) -> None:
        self._keys, self._eval_config = keys, eval_config
        self._model_name, self._baseline_name = model_name, baseline_name
        self._output_name, self._example_weighted = output_name, example_weighted

    def create_accumulator(self) -> _Counts:
        return _Counts()

    def _outcomes(self, element: metric_types.StandardMetricInputs, model_name: str) -> Iterable[Any]:
        return metric_util.to_label_prediction_example_weight(
            element, eval_config=self._eval_config, model_name=model_name, output_name=self._output_name,
            example_weighted=self._example_weighted, flatten=False, squeeze=False, allow_none=False)

    def add_input(self, accumulator: _Counts, element: metric_types.StandardMetricInputs) -> _Counts:
        for (label, candidate, weight), (_, baseline, _) in zip(
                self._outcomes(element, self._model_name), self._outcomes(element, self._baseline_name)):
            truth = int(np.asarray(label).reshape(-1)[0])
            candidate_right = int(np.argmax(np.asarray(candidate).reshape(-1))) == truth
            baseline_right = int(np.argmax(np.asarray(baseline).reshape(-1))) == truth
            index = (0 if candidate_right and baseline_right else 1 if candidate_right
                     else 2 if baseline_right else 3)
            accumulator.values[index] += float(metric_util.safe_to_scalar(weight))
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[_Counts]) -> _Counts:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for other in accumulators:
            result.values += other.values
        return result

    def extract_output(self, accumulator: _Counts) -> dict[metric_types.MetricKey, float]:
        return {key: float(value) for key, value in zip(self._keys, accumulator.values)}


def _computations(name: str = METRIC_NAME, eval_config: config_pb2.EvalConfig | None = None,
                  model_names: Iterable[str] = ("",), output_names: Iterable[str] = ("",),
                  example_weighted: bool = False) -> metric_types.MetricComputations:
    """One combiner per candidate model (none without a baseline: nothing to pair with)."""
    baseline_spec = model_util.get_baseline_model_spec(eval_config)
    if baseline_spec is None:
        return []
    computations = []
    for model_name in model_names:
        if model_name == baseline_spec.name:
            continue
        for output_name in output_names:
            keys = [metric_types.MetricKey(name=count, model_name=model_name, output_name=output_name,
                                           example_weighted=example_weighted) for count in COUNT_NAMES]
            computations.append(metric_types.MetricComputation(
                keys=keys, preprocessors=None,
                combiner=_PairedOutcomesCombiner(keys, eval_config, model_name, baseline_spec.name,
                                                 output_name, example_weighted)))
    return computations


class PairedOutcomes(metric_types.Metric):
    """Counts of rows both models / only the candidate / only the baseline / neither get right."""

    def __init__(self, name: str = METRIC_NAME) -> None:
        super().__init__(_computations, name=name)
