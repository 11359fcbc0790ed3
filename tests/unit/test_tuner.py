"""The Tuner's pieces (components/training/tuner.py) without a pipeline: each architecture's search space,
the best values applied over the config by their setting names, and the budget in minutes."""
import time

import keras_tuner
import pytest

from components.training.training_config import ConfigError, TrainingConfig, group_names
from components.training.tuner import DeadlineOracle, apply_hyperparameters, search_space, values_from_config

SPACES = {"cnn": {"cnn.dense_units", "cnn.dropout", "learning_rate"}, "resnet": {"resnet.width", "learning_rate"}}


@pytest.mark.parametrize("name", sorted(group_names()))
def test_every_architecture_declares_a_search_space_of_settable_keys(name):
    hp = search_space(TrainingConfig(model=name))
    assert set(hp.values) == SPACES[name]
    # Every default of the space is a valid setting of the config.
    config = apply_hyperparameters(TrainingConfig(model=name), hp.values)
    assert config.learning_rate == hp.values["learning_rate"]


def test_best_values_round_trip_through_the_artifact_and_apply_over_the_config():
    hp = search_space(TrainingConfig())
    hp.values.update({"cnn.dense_units": 256, "cnn.dropout": 0.2, "learning_rate": 1e-3})
    values = values_from_config(hp.get_config())            # what best_hyperparameters holds
    config = apply_hyperparameters(TrainingConfig(epochs=5), values)
    assert (config.cnn.dense_units, config.cnn.dropout, config.learning_rate, config.epochs) == (256, 0.2, 1e-3, 5)
    assert values_from_config(None) == {}
    with pytest.raises(ConfigError, match="cnn.dropout"):
        apply_hyperparameters(TrainingConfig(), {"cnn.dropout": 1.5})


def test_no_trial_starts_after_the_deadline():
    def oracle(deadline):
        return DeadlineOracle(objective=keras_tuner.Objective("val_accuracy", "max"), max_trials=5,
                              hyperparameters=search_space(TrainingConfig()), seed=1, deadline=deadline)

    assert oracle(time.monotonic() + 600).populate_space("0")["status"] == keras_tuner.engine.trial.TrialStatus.RUNNING
    assert oracle(time.monotonic() - 1).populate_space("0")["status"] == keras_tuner.engine.trial.TrialStatus.STOPPED


def test_a_trial_stops_training_at_the_deadline():
    import numpy as np
    import tf_keras as keras

    from components.models.configs import CnnConfig
    from components.models.registry import build_and_compile
    from components.training.tuner import StopAtDeadline

    model = build_and_compile(TrainingConfig(cnn=CnnConfig(conv_filters=(4,), dense_units=8)))
    x, y = np.zeros((64, 28, 28, 1), np.float32), np.zeros(64, np.int64)
    seen = []
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[
        StopAtDeadline(time.monotonic() - 1),
        keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))])
    assert seen == [0]        # of 8 batches x 3 epochs only the first: the deadline had passed
