"""The run summary's lines about continuous training: which span was ingested, which spans the
model trained on, warm or cold start, and the served model it was compared with.

Read from what the run recorded (ML Metadata artifacts and the Trainer's warm_start.json), so a
summary printed later says the same as the run's own.
"""
from __future__ import annotations

from typing import Any

from schema import contract


def _custom(artifact: Any, name: str) -> Any:
    value = artifact.custom_properties.get(name)
    if value is None:
        return None
    return value.int_value if value.HasField("int_value") else value.string_value


def span_facts(summary: Any) -> dict[str, Any]:
    """{'span', 'window_spans', 'warm_start', 'baseline_version'}; only what the run recorded."""
    facts: dict[str, Any] = {}
    example_gen = summary.component(contract.EXAMPLE_GEN)
    window = summary.component(contract.SPAN_WINDOW)
    if not window and not (example_gen and any(_custom(a, "span") for a in example_gen.outputs.get("examples", []))):
        return facts
    for artifact in (example_gen.outputs.get("examples", []) if example_gen else []):
        facts["span"] = _custom(artifact, "span")
    for artifact in (window.outputs.get("window", []) if window else []):
        facts["window_spans"] = [int(s) for s in (_custom(artifact, "window_spans") or "").split(",") if s]
    trainer = summary.component(contract.TRAINER)
    for artifact in (trainer.outputs.get("model_run", []) if trainer else []):
        from components.training.warm_start import read_record
        facts["warm_start"] = read_record(artifact.uri)
    baseline = summary.component(contract.BASELINE)
    for artifact in (baseline.outputs.get("baseline", []) if baseline else []):
        facts["baseline_version"] = _custom(artifact, "served_version") or None
    return facts


def describe_spans(summary: Any) -> list[str]:
    facts = span_facts(summary)
    if not facts:
        return []
    lines = [f"span: ingested span {facts.get('span')}"
             + (f"; training window spans {facts['window_spans']}" if facts.get("window_spans") else "")]
    start = facts.get("warm_start")
    if start:
        lines.append(f"training start: {start['reason']} ({start['epochs']} epochs)")
    if facts.get("baseline_version"):
        served = served_accuracy(summary.evaluation_uri)
        lines.append(f"compared with: served version {facts['baseline_version']}"
                     + (f" (accuracy {served:.4f} on the same rows)" if served is not None else ""))
    else:
        lines.append("compared with: nothing served before this run")
    return lines


def served_accuracy(evaluation_uri: str | None) -> float | None:
    """The served (baseline) model's overall accuracy in the Evaluator's output, if it ran."""
    if not evaluation_uri:
        return None
    try:
        import tensorflow_model_analysis as tfma

        result = tfma.load_eval_result(evaluation_uri, model_name="baseline")
        overall = next(m for key, m in result.slicing_metrics if not key)
        return float(next(iter(overall.values()))[""]["sparse_categorical_accuracy"]["doubleValue"])
    except Exception:  # no baseline evaluated (nothing served) or no evaluation written
        return None
