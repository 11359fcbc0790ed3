"""The paired decision's power on the full test split, and what it costs the Evaluator.

    tools/with-stack python benchmarks/decision_power.py [--rows 10000] [--output outputs/sample --rounds 3]

1. Power, by exact computation (no simulation noise): two models disagree on a share `d` of the
   rows (discordance); the candidate wins a share (1 + g/d)/2 of those, g being the true accuracy
   gain. The number of discordant rows D ~ Binomial(n, d); given D, the exact McNemar test
   (components/decision.py) rejects in the candidate's favour when b reaches the smallest value
   whose two-sided p is below the level. Summing P(D) * P(b >= that | D) gives the power; the
   table is the smallest gain detected with 80% power, per discordance.
2. Cost: the project's Evaluator executor on a finished run's test split (default: `make run`'s
   outputs) with the served model = the candidate, with and without the PairedOutcomes metric,
   alternated over rounds in one process; medians.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.decision import DecisionPolicy, mcnemar_exact  # noqa: E402


def critical_b(discordant: int, level: float) -> int | None:
    """Smallest b > discordant/2 whose exact two-sided McNemar p is below `level` (None: none)."""
    low, high = discordant // 2 + 1, discordant
    if discordant == 0 or mcnemar_exact(high, 0) >= level:
        return None
    while low < high:  # p falls as b moves away from the middle: bisect
        mid = (low + high) // 2
        if mcnemar_exact(mid, discordant - mid) < level:
            high = mid
        else:
            low = mid + 1
    return low


def power(rows: int, discordance: float, gain: float, level: float) -> float:
    """P(the test finds the candidate better) for a true gain on `rows` rows."""
    win = (1 + gain / discordance) / 2
    mean, sd = rows * discordance, (rows * discordance * (1 - discordance)) ** 0.5
    total = 0.0
    for discordant in range(max(0, int(mean - 8 * sd)), int(mean + 8 * sd) + 1):
        b = critical_b(discordant, level)
        if b is not None:
            total += stats.binom.pmf(discordant, rows, discordance) * stats.binom.sf(b - 1, discordant, win)
    return total


def smallest_gain(rows: int, discordance: float, level: float, target: float = 0.8) -> float:
    """The smallest true gain (accuracy points / 100) detected with `target` power."""
    low, high = 0.0, discordance
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (low, mid) if power(rows, discordance, mid, level) >= target else (mid, high)
    return high


def run_evaluator(run_output: Any, tmp: Path, candidate: str, served: str | None, policy: DecisionPolicy,
                  eval_config: Any, accuracy_threshold: float,
                  beam_args: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """The project's Evaluator executor on a finished run's Examples (test split), as the pipeline runs
    it (its Beam steps on `beam_args`' runner); returns (blessing, evaluation) artifacts. `run_output`
    is the run's RunSummary."""
    from tfx import types
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from components.custom_components import ThresholdEvaluator
    from schema import contract

    source = run_output.component(contract.EXAMPLE_GEN).outputs["examples"][0]
    examples = standard_artifacts.Examples()
    examples.uri = source.uri
    examples.split_names = source.properties["split_names"].string_value
    models = []
    for uri in (candidate, served) if served else (candidate,):
        model = standard_artifacts.Model()
        model.uri = uri
        models.append(model)
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    for artifact, name in ((evaluation, "evaluation"), (blessing, "blessing")):
        artifact.uri = str(tmp / name)
        os.makedirs(artifact.uri)
    channel = types.Channel
    component = ThresholdEvaluator(
        examples=channel(type=standard_artifacts.Examples), model=channel(type=standard_artifacts.Model),
        baseline_model=channel(type=standard_artifacts.Model), eval_config=eval_config,
        example_splits=[contract.TEST_SPLIT], accuracy_threshold=accuracy_threshold, decision_policy=policy)
    props = {k: proto_utils.proto_to_json(v) if hasattr(v, "DESCRIPTOR") else v
             for k, v in component.exec_properties.items()}
    executor = component.executor_spec.executor_class(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(beam_args), tmp_dir=str(tmp / "tmp"), unique_id="1"))
    executor.Do({"examples": [examples], "model": models[:1], "baseline_model": models[1:] if served else []},
                {"evaluation": [evaluation], "blessing": [blessing]}, props)
    return blessing, evaluation


def evaluator_cost(output: str, rounds: int) -> dict[str, float]:
    """Median Evaluator seconds with and without PairedOutcomes, served model = candidate."""
    import tempfile

    from pipeline.config import load_config
    from pipeline.pipeline import eval_config
    from pipeline.runner import summarize

    config = load_config("sample", overrides={"output_root": output})
    summary = summarize(config)
    model = summary.component("Trainer").outputs["model"][0].uri
    times: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(rounds):
        for variant in ("without", "with"):
            configured = eval_config(config.accuracy_threshold, config.class_recall_floor)
            if variant == "without":
                metrics = configured.metrics_specs[0].metrics
                keep = [m for m in metrics if m.class_name != "PairedOutcomes"]
                del metrics[:]
                metrics.extend(keep)
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                if variant == "with":
                    run_evaluator(summary, Path(tmp), model, model, config.decision_policy(), configured,
                                  config.accuracy_threshold)
                else:
                    _run_stock(summary, Path(tmp), model, configured, config)
                times[variant].append(time.perf_counter() - started)
    return {k: statistics.median(v) for k, v in times.items()}


def _run_stock(summary: Any, tmp: Path, model: str, configured: Any, config: Any) -> None:
    """The same evaluation without the paired metric (the blessing is then TFMA's alone)."""
    import components.custom_components as custom

    amend = custom.amend_blessing
    custom.amend_blessing = lambda *a, **k: None
    try:
        run_evaluator(summary, tmp, model, model, config.decision_policy(), configured, config.accuracy_threshold)
    finally:
        custom.amend_blessing = amend


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="evaluation rows (the full test split)")
    parser.add_argument("--level", type=float, default=DecisionPolicy.significance_level)
    parser.add_argument("--output", help="a finished `make run` output root to time the Evaluator on")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"smallest gain detected with 80% power, {args.rows} rows, exact McNemar at {args.level}:")
    print("| discordant rows | smallest gain (points) | power at +0.5 points | power at +1.0 point |")
    print("| ---: | ---: | ---: | ---: |")
    for discordance in (0.02, 0.04, 0.06, 0.08):
        gain = smallest_gain(args.rows, discordance, args.level)
        print(f"| {100 * discordance:.0f}% | {100 * gain:.2f} | {power(args.rows, discordance, 0.005, args.level):.2f} "
              f"| {power(args.rows, discordance, 0.01, args.level):.2f} |")
    if args.output:
        cost = evaluator_cost(args.output, args.rounds)
        print(f"Evaluator on {args.output}'s test split, served = candidate, median of {args.rounds}: "
              f"{cost['without']:.1f} s without PairedOutcomes, {cost['with']:.1f} s with "
              f"(+{cost['with'] - cost['without']:.1f} s, {cost['with'] / cost['without']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
