"""Fault injection, models: a candidate below the threshold or worse than the blessed model is not
pushed (exit 3) and the served version stays; a pipeline killed with SIGKILL during Trainer leaves
no half-written version, and the next run completes reusing the cached upstream executions."""
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from conftest import NO_CLASS_FLOOR, NO_LATENCY_GATE, NO_LATENCY_GATE_ARGS
from pipeline import runner
from pipeline.config import PROJECT_ROOT, load_config
from schema import contract
from schema.contract import ACCURACY_METRIC


def _versions(base):
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


@pytest.fixture(scope="module")
def blessed_once(tmp_path_factory):
    """A pipeline whose first run blessed and pushed a model (its own output root)."""
    out = tmp_path_factory.mktemp("model-faults")
    config = load_config("sample", overrides={"output_root": str(out), "epochs": 4, **NO_CLASS_FLOOR,
                                              **NO_LATENCY_GATE})
    summary = runner.run_local(config, progress=False)
    assert summary.pushed_to, summary.failures
    return config, summary


def test_candidate_below_threshold_is_not_pushed(blessed_once):
    config, first = blessed_once
    before = _versions(config.serving_model_dir)
    strict = config.replace(accuracy_threshold=0.999)
    summary = runner.run_local(strict, progress=False)
    assert summary.blessed is False and summary.pushed_to is None
    assert runner.exit_code(summary) == runner.EXIT_NOT_PUSHED
    assert "NOT BLESSED" in runner.format_summary(summary, strict)
    assert summary.component("Trainer").state == "CACHED"  # only the verdict changed
    assert _versions(config.serving_model_dir) == before


def test_candidate_worse_than_blessed_model_is_not_pushed(blessed_once):
    config, first = blessed_once
    before = _versions(config.serving_model_dir)
    # A much weaker candidate that still clears the absolute threshold: only the paired comparison
    # with the served model (components/decision.py) can stop it.
    weak = config.replace(epochs=1, cnn={"conv_filters": (4,), "dense_units": 8}, accuracy_threshold=0.3)
    summary = runner.run_local(weak, progress=False)
    accuracy = summary.metrics["overall"][ACCURACY_METRIC]
    assert 0.3 <= accuracy < first.metrics["overall"][ACCURACY_METRIC]
    assert summary.blessed is False and summary.pushed_to is None
    assert _versions(config.serving_model_dir) == before
    import json
    report = json.load(open(os.path.join(os.path.dirname(summary.report_path), "per_class.json")))
    assert report["blessing"]["baseline_accuracy"] == pytest.approx(
        first.metrics["overall"][ACCURACY_METRIC], abs=1e-6)
    assert summary.decision.startswith("worse (") and "significantly worse" in summary.decision, summary.decision


def test_sigkill_during_trainer_loses_nothing(tmp_path):
    out = tmp_path / "out"
    config = load_config("sample", overrides={"output_root": str(out), "epochs": 30,
                                              "early_stopping_patience": 30, **NO_CLASS_FLOOR,
                                              **NO_LATENCY_GATE})
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--preset", "sample", "--output", str(out),
           "--set", "epochs=30", "--set", "early_stopping_patience=30", *NO_LATENCY_GATE_ARGS]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dirs = os.path.join(config.pipeline_root, "Trainer", "model_run")
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            events = [f for d, _, fs in os.walk(run_dirs) for f in fs if "tfevents" in f]
            if events:  # the Trainer is mid-training
                time.sleep(2)
                break
            time.sleep(0.5)
        assert proc.poll() is None, "pipeline ended before the Trainer could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _versions(config.serving_model_dir) == []  # nothing half-pushed

    summary = runner.run_local(config.replace(epochs=3), progress=False)
    assert not summary.failures, summary.failures
    for upstream in (contract.EXAMPLE_GEN, "StatisticsGen", "ExampleValidator", "Transform"):
        assert summary.component(upstream).state == "CACHED", upstream
    assert summary.component("Trainer").state == "COMPLETE" and summary.pushed_to
    for version in _versions(config.serving_model_dir):  # every served version is whole
        assert not version.startswith(".")
        tf.saved_model.load(os.path.join(config.serving_model_dir, version))
