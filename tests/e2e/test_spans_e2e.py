"""Continuous training on the committed sample spans (data/sample-spans), end to end under
LocalDagRunner: span 1 trained and pushed; span 2 arrives, only span 2 is ingested, the Trainer
warm-starts from span 1's served model, the Evaluator compares with it on span 2's test split plus
the fixed holdout, and the better model is what is served; a drifting span is refused before
training and never enters the span store."""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import NO_CLASS_FLOOR, NO_LATENCY_GATE
from pipeline.config import PROJECT_ROOT, load_config
from schema import contract

SPANS = PROJECT_ROOT / "data" / "sample-spans"


def _served(config) -> list[int]:
    from components.baseline import served_versions
    return served_versions(config.serving_model_dir)


def _invert(src: Path, dst: Path) -> None:
    """The same rows with every pixel v -> 255 - v: valid for the schema, a different image source."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(src, "rt") as f, gzip.open(dst, "wt") as out:
        out.write(f.readline())
        for line in f:
            label, *pixels = line.strip().split(",")
            out.write(",".join([label, *(str(255 - int(p)) for p in pixels)]) + "\n")


@pytest.fixture(scope="module")
def spans_run(tmp_path_factory: pytest.TempPathFactory):
    """Span 1, then span 2, then a drifting span 3, each as its own pipeline run."""
    from components.spans import stored_spans
    from pipeline import runner

    root = tmp_path_factory.mktemp("spans")
    data = root / "data"
    shutil.copytree(SPANS / "span-1", data / "span-1")
    shutil.copytree(SPANS / "holdout", data / "holdout")
    # A low threshold: this test is about the flow (the accuracy gate has its own tests).
    config = load_config("sample-spans", overrides={
        "data_root": str(data), "output_root": str(root / "out"), "epochs": "3", "warm_start_epochs": "2",
        "accuracy_threshold": "0.3", **NO_CLASS_FLOOR, **NO_LATENCY_GATE})
    runs = {1: runner.run_local(config, progress=False)}
    runs["served_after_1"] = _served(config)
    runs["stored_after_1"] = stored_spans(config.span_store_dir)
    shutil.copytree(SPANS / "span-2", data / "span-2")
    runs[2] = runner.run_local(config, progress=False)
    runs["served_after_2"] = _served(config)
    runs["stored_after_2"] = stored_spans(config.span_store_dir)
    for name in ("fashion-mnist_train.csv.gz", "fashion-mnist_test.csv.gz"):
        _invert(SPANS / "span-2" / name, data / "span-3" / name)
    runs[3] = runner.run_local(config, progress=False)
    runs["served_after_3"] = _served(config)
    runs["stored_after_3"] = stored_spans(config.span_store_dir)
    return config, runs


def _artifact(summary, component: str, key: str):
    return summary.component(component).outputs[key][0]


def test_span_1_is_trained_cold_and_pushed(spans_run):
    from components.training.warm_start import read_record

    config, runs = spans_run
    first = runs[1]
    assert not first.failures, first.failures
    assert first.pushed_to and runs["served_after_1"] == [int(os.path.basename(first.pushed_to))]
    start = read_record(_artifact(first, "Trainer", "model_run").uri)
    assert start["warm"] is False and "first run" in start["reason"] and start["epochs"] == config.training.epochs
    assert runs["stored_after_1"] == [1]   # accepted span 1 is in the store, and nothing else


def test_span_2_alone_is_ingested_and_trained_on_the_window(spans_run):
    config, runs = spans_run
    second = runs[2]
    assert not second.failures, second.failures
    examples = _artifact(second, contract.EXAMPLE_GEN, "examples")
    assert examples.custom_properties["span"].int_value == 2
    files = [f["file"] for split in second.data_input["splits"].values() for f in split["files"]]
    assert files and all(os.sep + "span-2" + os.sep in f for f in files), files
    # The holdout never changes: its ExampleGen is answered from the cache, not parsed again.
    assert second.component("HoldoutExampleGen").state == "CACHED"
    window = _artifact(second, "SpanWindow", "window")
    assert window.custom_properties["window_spans"].string_value == "1,2"
    # The window's training split = span 1's stored shards + span 2's, never re-parsed from CSV.
    names = sorted(os.listdir(os.path.join(window.uri, "Split-train")))
    assert [n.split("-")[1] for n in names] == ["1", "2"], names
    import tensorflow_data_validation as tfdv
    stats = tfdv.load_stats_binary(os.path.join(
        _artifact(second, "StatisticsGen", "statistics").uri, "Split-train", "FeatureStats.pb"))
    assert stats.datasets[0].num_examples == 1250   # only the new span went through StatisticsGen


def test_span_2_warm_starts_from_the_served_model_with_fewer_epochs(spans_run):
    from components.training.warm_start import read_record

    config, runs = spans_run
    run_dir = _artifact(runs[2], "Trainer", "model_run").uri
    start = read_record(run_dir)
    assert start["warm"] is True and "architecture matches" in start["reason"], start
    assert start["epochs"] == config.training.warm_start_epochs < config.training.epochs
    with open(os.path.join(run_dir, "history.json")) as f:
        assert len(json.load(f)["loss"]) <= config.training.warm_start_epochs
    from pipeline.runner import format_summary
    text = format_summary(runs[2], config)
    assert "training start: architecture matches the served model: warm start" in text
    assert f"compared with: served version {runs['served_after_1'][0]}" in text
    report = open(runs[2].report_path).read()
    assert "warm start" in report


def test_span_2_is_compared_with_span_1s_served_model_and_the_better_one_is_served(spans_run):
    import tensorflow_model_analysis as tfma

    config, runs = spans_run
    second = runs[2]
    baseline = _artifact(second, "ServedModelBaseline", "baseline")
    assert baseline.custom_properties["served_version"].string_value == str(runs["served_after_1"][0])
    blessing = _artifact(second, "Evaluator", "blessing")
    assert "baseline_model_id" in blessing.custom_properties      # evaluated against the served model
    uri = _artifact(second, "Evaluator", "evaluation").uri

    def accuracy(model_name: str) -> tuple[float, float]:
        result = tfma.load_eval_result(uri, model_name=model_name)
        overall = next(m for key, m in result.slicing_metrics if not key)
        values = next(iter(overall.values()))[""]
        return values["sparse_categorical_accuracy"]["doubleValue"], values["example_count"]["doubleValue"]

    candidate, count = accuracy("candidate")
    served, _ = accuracy("baseline")
    assert count == 400                # span 2's 200 test rows + the 200 holdout rows
    # The paired decision on those same rows (components/decision.py), with the default policy
    # `keep`: only a significant gain is blessed, and the summary says which outcome and why.
    decision = blessing.custom_properties["decision"].string_value
    assert decision in ("better", "no evidence", "worse"), decision
    better = decision == "better" and "refused_classes" not in blessing.custom_properties
    assert second.blessed is better, (decision, candidate, served)
    from pipeline.runner import format_summary
    assert f"decision: {decision} (" in format_summary(second, config)
    if better:
        assert runs["served_after_2"][-1] == int(os.path.basename(second.pushed_to)) > runs["served_after_1"][-1]
    else:
        assert runs["served_after_2"] == runs["served_after_1"] and not second.pushed_to


def test_a_drifting_span_is_refused_before_training_naming_the_measure(spans_run):
    config, runs = spans_run
    third = runs[3]
    assert third.failures and "SpanDriftError" in third.failures[0]
    message = third.failures[0]
    assert "span 3 drifted from span 2" in message
    assert "feature 'pixels': Jensen-Shannon divergence" in message and "above the threshold 0.1" in message
    for never in ("SpanWindow", "Transform", "Trainer", "AtomicPusher"):
        component = third.component(never)
        assert component is None or component.state not in ("COMPLETE", "CACHED"), never
    assert runs["stored_after_2"] == [1, 2] and runs["stored_after_3"] == [1, 2]  # span 3 never stored
    assert runs["served_after_3"] == runs["served_after_2"]
