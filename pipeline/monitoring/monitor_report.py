"""The monitor's HTML page: what crossed which threshold, and plots that show how served traffic
differs from training data -- drawn from the same TFDV statistics the thresholds were checked on,
plus a few of the served images, because one look at them often says what went wrong."""
from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from pipeline.monitoring.image_measures import (
    CENTRE_OFFSET,
    LIGHT_BACKGROUND,
    MEAN_BRIGHTNESS,
    NEAR_EMPTY,
    PREDICTED_LABEL,
)
from schema.contract import CLASS_NAMES, IMAGE_SIZE, RAW_PIXELS_KEY


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _feature(stats: Any, name: str) -> Any:
    for f in stats.datasets[0].features:
        if f.path.step and f.path.step[0] == name:
            return f
    return None


def _histogram(feature: Any) -> tuple[np.ndarray, np.ndarray]:
    """(bucket centres, shares) of a numeric feature's standard histogram."""
    hists = [h for h in feature.num_stats.histograms if h.type == 0] or list(feature.num_stats.histograms)
    buckets = hists[0].buckets if hists else []
    centres = np.array([(b.low_value + b.high_value) / 2 for b in buckets])
    counts = np.array([b.sample_count for b in buckets])
    return centres, counts / counts.sum() if counts.sum() else counts


def _shares(feature: Any, n: int) -> np.ndarray:
    """Share of each category 0..n-1 of a categorical INT feature."""
    shares = np.zeros(n)
    if feature is None:
        return shares
    buckets = feature.string_stats.rank_histogram.buckets
    total = sum(b.sample_count for b in buckets)
    for b in buckets:
        try:
            shares[int(b.label)] = b.sample_count / total if total else 0
        except (ValueError, IndexError):
            pass
    return shares


def _numeric_plot(baseline: Any, served: Any, name: str, title: str) -> str:
    fig = Figure(figsize=(4.6, 2.8))
    ax = fig.subplots()
    for stats, label, colour in ((baseline, "training", "tab:blue"), (served, "served", "tab:orange")):
        feature = _feature(stats, name)
        if feature is not None:
            x, y = _histogram(feature)
            width = (x[1] - x[0]) * 0.9 if len(x) > 1 else 1
            ax.bar(x, y, width=width, alpha=0.5, label=label, color=colour)
    ax.set_title(title)
    ax.set_ylabel("share")
    ax.legend()
    return _png(fig)


def _class_mix_plot(baseline: Any, served: Any) -> str:
    expected = _shares(_feature(baseline, PREDICTED_LABEL), len(CLASS_NAMES))
    answered = _shares(_feature(served, PREDICTED_LABEL), len(CLASS_NAMES))
    fig = Figure(figsize=(7, 3))
    ax = fig.subplots()
    x = np.arange(len(CLASS_NAMES))
    ax.bar(x - 0.2, expected, 0.4, label="test split labels")
    ax.bar(x + 0.2, answered, 0.4, label="served answers")
    ax.set_xticks(x, CLASS_NAMES, rotation=40, ha="right")
    ax.set_ylabel("share")
    ax.set_title("Class mix")
    ax.legend()
    return _png(fig)


def _flags_plot(baseline: Any, served: Any) -> str:
    fig = Figure(figsize=(4.6, 2.8))
    ax = fig.subplots()
    names = [LIGHT_BACKGROUND, NEAR_EMPTY]
    x = np.arange(len(names))
    ax.bar(x - 0.2, [_shares(_feature(baseline, n), 2)[1] for n in names], 0.4, label="training")
    ax.bar(x + 0.2, [_shares(_feature(served, n), 2)[1] for n in names], 0.4, label="served")
    ax.set_xticks(x, ["light background", "near-empty"])
    ax.set_ylabel("share of images")
    ax.legend()
    return _png(fig)


def _examples_plot(pixels: np.ndarray, predicted: np.ndarray, count: int = 16) -> str:
    count = min(count, len(pixels))
    fig = Figure(figsize=(1.2 * ((count + 1) // 2 or 1), 2.8))
    axes = fig.subplots(2, (count + 1) // 2 or 1)
    for ax in np.ravel(axes):
        ax.axis("off")
    for i, ax in zip(range(count), np.ravel(axes)):
        ax.imshow(np.clip(pixels[i], 0, 255).reshape(IMAGE_SIZE, IMAGE_SIZE), cmap="gray", vmin=0, vmax=255)
        ax.set_title(CLASS_NAMES[predicted[i]] if 0 <= predicted[i] < len(CLASS_NAMES) else "?", fontsize=7)
    return _png(fig)


def write_report(path: str, result: Any, rows: Any, baseline: Any, served: Any) -> str:
    verdict = ("ALARM: " + str(len(result.alarms)) + " threshold(s) crossed or schema anomalies"
               if result.alarms else "OK: served traffic within every threshold")
    measurement_rows = "".join(
        f"<tr class='{'bad' if m.crossed else ''}'><td>{html.escape(m.feature)}</td><td>{m.measure}</td>"
        f"<td>{m.value:.4g}</td><td>{m.threshold:g}</td><td>{'crossed' if m.crossed else 'ok'}</td></tr>"
        for m in result.measurements)
    alarms = "".join(f"<li>{html.escape(a)}</li>" for a in result.alarms) or "<li>none</li>"
    skipped = "".join(f"<li>{html.escape(k)}: {v}</li>" for k, v in result.skipped.items())
    plots = [
        _numeric_plot(baseline, served, RAW_PIXELS_KEY, "Pixel values"),
        _class_mix_plot(baseline, served),
        _numeric_plot(baseline, served, MEAN_BRIGHTNESS, "Mean brightness per image"),
        _numeric_plot(baseline, served, CENTRE_OFFSET, "Garment centre offset (px)"),
        _flags_plot(baseline, served),
        _examples_plot(rows.pixels, rows.predicted),
    ]
    images = "".join(f"<img src='{p}'>" for p in plots)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Served traffic: {html.escape(result.model)}
 version {result.version}</title><style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:2px 10px}}
 tr.bad{{background:#fdd}} img{{margin:6px;vertical-align:top}} .alarm{{color:#b00}} .ok{{color:#070}}</style></head>
<body><h1>Served traffic vs. training data</h1>
<p>Model <b>{html.escape(result.model or '(any)')}</b> version <b>{result.version}</b>: {result.rows} logged images.
Training statistics: <code>{html.escape(result.training.statistics_uri)}</code> (found through ML Metadata).</p>
<h2 class="{'alarm' if result.alarms else 'ok'}">{verdict}</h2><ul>{alarms}</ul>
<h2>Measures (thresholds from schema/schema.pbtxt, SERVING environment)</h2>
<table><tr><th>feature</th><th>measure</th><th>value</th><th>threshold</th><th></th></tr>{measurement_rows}</table>
{'<h3>Log records skipped</h3><ul>' + skipped + '</ul>' if skipped else ''}
<h2>Plots</h2>{images}</body></html>"""
    with open(path, "w") as f:
        f.write(page)
    return path
