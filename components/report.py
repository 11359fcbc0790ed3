"""The run report: one HTML page with PNG plots that says how training went and why the model
was (or was not) blessed.

Every number on the page comes from an artifact of the run -- the Trainer's history, TFMA's
confusion matrix and validation result, predictions of the exported model on the test split --
so the report agrees with what the Evaluator decided.
"""
from __future__ import annotations

import dataclasses
import html
import io
import json
import logging
import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from schema.contract import (
    ACCURACY_METRIC,
    CLASS_NAMES,
    LABEL_KEY,
    NUM_CLASSES,
    REPORT_FILE,
    TRAINING_ACCURACY_METRIC,
)

log = logging.getLogger(__name__)

METRICS_FILE = "per_class.json"


@dataclasses.dataclass
class Blessing:
    blessed: bool
    threshold: float | None          # lower bound on overall accuracy
    accuracy: float | None           # candidate's overall accuracy
    baseline_accuracy: float | None  # latest blessed model's, if there was one
    failures: list[str]


def per_class_table(confusion: np.ndarray) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class from a [actual, predicted] count matrix."""
    rows = []
    for c in range(confusion.shape[0]):
        tp = float(confusion[c, c])
        support = float(confusion[c, :].sum())
        predicted = float(confusion[:, c].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class_id": c, "class_name": CLASS_NAMES[c], "precision": precision,
                     "recall": recall, "f1": f1, "support": int(support)})
    return rows


def confusion_from_tfma(evaluation_uri: str) -> np.ndarray:
    """The overall slice's MultiClassConfusionMatrixPlot as a [10, 10] count matrix."""
    import tensorflow_model_analysis as tfma

    for plots in tfma.load_plots(evaluation_uri):
        if plots.slice_key.single_slice_keys:
            continue
        for item in plots.plot_keys_and_values:
            if item.key.name != "multi_class_confusion_matrix_plot" or item.key.model_name == "baseline":
                continue
            matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
            first = item.value.multi_class_confusion_matrix_at_thresholds.matrices[0]
            for e in first.entries:
                matrix[e.actual_class_id, e.predicted_class_id] = int(round(e.num_weighted_examples))
            return matrix
    raise ValueError(f"{evaluation_uri}: no multi_class_confusion_matrix_plot for the overall slice")


def threshold_failures(evaluation_uri: str) -> list[str]:
    """TFMA's failed thresholds, one line each, naming the class for a label slice's floor."""
    import tensorflow_model_analysis as tfma

    failures = []
    for per_slice in tfma.load_validation_result(evaluation_uri).metric_validations_per_slice:
        keys = per_slice.slice_key.single_slice_keys
        where = (f"class {keys[0].int64_value} {CLASS_NAMES[keys[0].int64_value]} recall"
                 if len(keys) == 1 and keys[0].column == LABEL_KEY and 0 <= keys[0].int64_value < NUM_CLASSES
                 else "overall")
        for f in per_slice.failures:
            bound = f.metric_threshold.value_threshold.lower_bound.value
            limit = "threshold" if where == "overall" else "floor"
            kind = (f"below the {limit} {bound:g}" if f.metric_threshold.HasField("value_threshold")
                    else " ".join(str(f.metric_threshold).split()))
            diff = " (vs. baseline)" if f.metric_key.is_diff else ""
            failures.append(f"{where}: {f.metric_key.name}{diff} = {f.metric_value.double_value.value:.4f} {kind}")
    return failures


def blessing_from_tfma(evaluation_uri: str, blessed: bool) -> Blessing:
    """Threshold, candidate and baseline accuracy and failure reasons from TFMA's outputs."""
    import tensorflow_model_analysis as tfma
    from tfx.dsl.io import fileio

    threshold = None
    with fileio.open(os.path.join(evaluation_uri, "eval_config.json")) as f:
        config = json.load(f)
    for spec in config.get("evalConfig", config).get("metricsSpecs", []):
        for metric in spec.get("metrics", []):
            for per_slice in metric.get("perSliceThresholds", []):
                bound = per_slice.get("threshold", {}).get("valueThreshold", {}).get("lowerBound")
                overall = all(not s for s in per_slice.get("slicingSpecs", [{}]))  # not a class floor
                if bound is not None and overall:
                    threshold = float(bound)
    accuracy = baseline = None
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue
        for kv in metrics.metric_keys_and_values:
            if kv.key.name != ACCURACY_METRIC or kv.key.is_diff:
                continue
            value = kv.value.double_value.value
            if kv.key.model_name == "baseline":
                baseline = value
            else:
                accuracy = value
    failures = threshold_failures(evaluation_uri)
    return Blessing(blessed, threshold, accuracy, baseline, failures)


def _save(fig: Any, path: str) -> None:
    from tfx.dsl.io import fileio

    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    with fileio.open(path, "wb") as f:   # the report's artifact may be on gs:// (Kubeflow, Vertex)
        f.write(png.getvalue())


def plot_history(history: dict[str, list[float]], path: str) -> None:
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", TRAINING_ACCURACY_METRIC)):
        for prefix, label in (("", "training"), ("val_", "validation")):
            values = history.get(prefix + metric)
            if values:
                ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def plot_confusion(confusion: np.ndarray, path: str) -> None:
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.subplots()
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(NUM_CLASSES), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(NUM_CLASSES), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    top = confusion.max() or 1
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if confusion[i, j] > top / 2 else "black")
    ax.set_title("confusion matrix (test split)")
    _save(fig, path)


def plot_misclassified(images: np.ndarray, actual: np.ndarray, predicted: np.ndarray, path: str,
                       limit: int = 36) -> None:
    n = min(limit, len(images))
    cols = 6
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(cols * 1.7, rows * 1.9))
    axes = fig.subplots(rows, cols)
    for k, ax in enumerate(np.atleast_1d(axes).reshape(-1)):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k].reshape(28, 28), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"true {CLASS_NAMES[actual[k]]}\npred {CLASS_NAMES[predicted[k]]}", fontsize=7)
    _save(fig, path)


def data_rows(data_input: dict[str, Any] | None) -> str:
    """HTML rows, one per split: files read, rows taken, blank lines skipped, rows refused,
    images also in the training split."""
    if not data_input:
        return '<tr><td colspan="6">no data report recorded by ExampleGen</td></tr>'
    dup = (data_input.get("duplicates") or {}).get("splits", {})
    rows = []
    for split, s in data_input["splits"].items():
        files = "<br>".join(html.escape(os.path.basename(f["file"])) for f in s["files"])
        if s.get("ignored"):
            files += "<br><small>ignored: " + ", ".join(
                html.escape(f"{i['file']} ({i['why']})") for i in s["ignored"]) + "</small>"
        d = dup.get(split, {})
        shared = (f"{d['also_in_reference']} ({d['share']:.2%})" if "also_in_reference" in d else "-")
        rows.append(f'<tr id="data-{html.escape(split)}"><td>{html.escape(split)}</td><td>{files}</td>'
                    f"<td>{s['rows']}</td><td>{s['blank_lines']}</td><td>{s['rows_refused']}</td>"
                    f"<td>{shared}</td></tr>")
    return "\n".join(rows)


def decision_section(decision: dict[str, Any] | None) -> str:
    """The paired decision (components/paired_blessing.py's decision.json) and its table per class."""
    if not decision:
        return ""
    head = (f'<h2>Decision against the served model</h2>\n<p id="decision">{html.escape(decision["summary"])}</p>')
    if not decision.get("classes"):
        return head

    def recall(c: dict[str, int], side: str) -> float:
        rows = sum(c.values())
        return (c["both_right"] + c[side]) / rows if rows else 0.0
    rows = []
    for v in decision["classes"]:
        c = v["counts"]
        cand, served = recall(c, "only_candidate"), recall(c, "only_served")
        verdict = "REFUSED: dropped with evidence" if v["refused"] else "ok"
        rows.append(f"<tr><td>{v['class_id']}</td><td>{html.escape(v['name'])}</td><td>{cand:.4f}</td>"
                    f"<td>{served:.4f}</td><td>{100 * (cand - served):+.2f}</td><td>{c['only_candidate']}</td>"
                    f"<td>{c['only_served']}</td><td>{v['adjusted_p_value']:.3g}</td><td>{verdict}</td></tr>")
    return (head + '\n<table id="decision-classes"><tr><th>id</th><th>class</th><th>candidate recall</th>'
            "<th>served recall</th><th>difference (points)</th><th>rows only the candidate gets right</th>"
            "<th>rows only the served model gets right</th><th>Holm-adjusted McNemar p</th><th>verdict</th></tr>\n"
            + "\n".join(rows) + "</table>")


def write_report(out_dir: str, *, history: dict[str, list[float]], confusion: np.ndarray,
                 blessing: Blessing, misclassified: tuple[np.ndarray, np.ndarray, np.ndarray],
                 run_info: dict[str, str], data_input: dict[str, Any] | None = None,
                 decision: dict[str, Any] | None = None) -> str:
    """Writes index.html, the PNGs and per_class.json into out_dir (a local path or any URI TFX's
    file I/O writes, e.g. gs://); returns the HTML path."""
    from tfx.dsl.io import fileio

    fileio.makedirs(out_dir)
    plot_history(history, os.path.join(out_dir, "history.png"))
    plot_confusion(confusion, os.path.join(out_dir, "confusion.png"))
    plot_misclassified(*misclassified, os.path.join(out_dir, "misclassified.png"))
    table = per_class_table(confusion)
    with fileio.open(os.path.join(out_dir, METRICS_FILE), "w") as f:
        json.dump({"per_class": table, "blessing": dataclasses.asdict(blessing)}, f, indent=1)

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    rows = "\n".join(
        f"<tr><td>{r['class_id']}</td><td>{html.escape(r['class_name'])}</td>"
        f"<td>{r['precision']:.4f}</td><td>{r['recall']:.4f}</td><td>{r['f1']:.4f}</td>"
        f"<td>{r['support']}</td></tr>" for r in table)
    verdict = "BLESSED (pushed if the Pusher ran)" if blessing.blessed else "NOT BLESSED (not pushed)"
    failures = "".join(f"<li>{html.escape(f)}</li>" for f in blessing.failures) or "<li>none</li>"
    info = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in run_info.items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Fashion-MNIST run report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}td,th{{padding:2px 10px;text-align:left}}
table{{border-collapse:collapse}}tr:nth-child(even){{background:#f3f3f3}}</style></head><body>
<h1>Fashion-MNIST run report</h1>
<table>{info}</table>
<h2>Blessing: {verdict}</h2>
<table>
<tr><th>test accuracy (candidate)</th><td id="accuracy">{fmt(blessing.accuracy)}</td></tr>
<tr><th>threshold (lower bound)</th><td id="threshold">{fmt(blessing.threshold)}</td></tr>
<tr><th>baseline (latest blessed model)</th><td id="baseline">{fmt(blessing.baseline_accuracy)}</td></tr>
</table>
<p>Failed checks:</p><ul>{failures}</ul>
{decision_section(decision)}
<h2>Data</h2>
<table id="data"><tr><th>split</th><th>files read</th><th>rows taken</th><th>blank lines skipped</th>
<th>rows refused</th><th>images also in the training split</th></tr>
{data_rows(data_input)}</table>
<h2>Training</h2><img src="history.png" alt="loss and accuracy per epoch">
<h2>Per class (test split)</h2>
<table id="per-class"><tr><th>id</th><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{rows}</table>
<h2>Confusion matrix</h2><img src="confusion.png" alt="confusion matrix">
<h2>Misclassified test images</h2><img src="misclassified.png" alt="misclassified test images">
</body></html>
"""
    path = os.path.join(out_dir, REPORT_FILE)
    with fileio.open(path, "w") as f:
        f.write(page)
    return path
