"""`--set tune=true`: TFX's Tuner before the Trainer, on the sample with a tiny budget (2 trials of 1
epoch); the Trainer trains with the best hyperparameters it found."""
import json
import os

import pytest

from conftest import NO_CLASS_FLOOR, NO_LATENCY_GATE
from pipeline.config import load_config
from schema import contract

BUDGET = {"tune": "true", "tune_trials": "2", "tune_epochs": "1", "epochs": "2"}


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    from pipeline import runner

    out = tmp_path_factory.mktemp("tuned-run")
    config = load_config("sample", overrides={"output_root": str(out), **NO_LATENCY_GATE, **NO_CLASS_FLOOR, **BUDGET})
    return config, runner.run_local(config, progress=False)


def best_values(summary) -> dict:
    [best] = summary.component(contract.TUNER).outputs["best_hyperparameters"]
    [name] = os.listdir(best.uri)
    with open(os.path.join(best.uri, name)) as f:
        return json.load(f)["values"]


def test_tuner_runs_before_the_trainer_and_writes_the_best_hyperparameters(tuned_run):
    _, summary = tuned_run
    assert not summary.failures, summary.failures
    assert sorted(c.name for c in summary.components) == sorted([*contract.COMPONENT_IDS, contract.TUNER])
    for name in (contract.TUNER, contract.TRAINER):
        assert summary.component(name).state == "COMPLETE"
    values = best_values(summary)
    # The cnn's search space (components/models/configs.py, CnnConfig.search_space).
    assert set(values) == {"cnn.dense_units", "cnn.dropout", "learning_rate"}
    assert values["cnn.dense_units"] in (64, 128, 256, 512)


def test_the_trainer_trained_with_the_tuned_values(tuned_run):
    import tensorflow as tf

    _, summary = tuned_run
    values = best_values(summary)
    [run] = summary.component(contract.TRAINER).outputs["model_run"]
    with open(os.path.join(run.uri, contract.TRAINING_CONFIG_FILE)) as f:
        recorded = json.load(f)
    assert recorded["tuned"] == values
    assert recorded["config"]["cnn"]["dense_units"] == values["cnn.dense_units"]
    assert recorded["config"]["learning_rate"] == pytest.approx(values["learning_rate"])
    # Observable in the exported model itself: the dense layer's width is the tuned one.
    [model] = summary.component(contract.TRAINER).outputs["model"]
    loaded = tf.saved_model.load(os.path.join(model.uri, "Format-Serving"))
    kernels = [v for v in loaded.variables if v.name.startswith("features/kernel")]
    assert len(kernels) == 1 and kernels[0].shape[-1] == values["cnn.dense_units"], \
        [v.name for v in loaded.variables]
