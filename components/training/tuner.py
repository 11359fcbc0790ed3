"""TFX Tuner module: `tuner_fn` searches the selected architecture's hyperparameters (`--set tune=true`).

The search space is the architecture's own, declared beside its defaults
(components/models/configs.py, `search_space(hp)` on each config group); a hyperparameter is named
by the setting it sets (`cnn.dense_units`, `learning_rate`), so the best values apply over the
TrainingConfig by name (`apply_hyperparameters`), here for each trial and in the Trainer's run_fn
from the Tuner's `best_hyperparameters`.

A trial trains as run_fn does (components/training/training_loop.py: the same input, build, compile, early
stopping) for the budget's epochs and is scored by its best accuracy on the training split's
validation slice, the rows early stopping holds out: the test split is not an input of the Tuner
(create_pipeline gives it the train split only), so tuning never sees the rows the Evaluator
judges. The budget: at most `trials` trials (KerasTuner's max_trials), and no trial starts after
`minutes` (the oracle ends the search) nor trains past it (a callback stops its fit).

KerasTuner 1.4 checks a built model against Keras 3's Model class, while this project's models are
tf_keras (components/models/__init__.py); so the tuner runs its own trial (`run_trial`: build with
the project's registry, fit, return the objective) instead of KerasTuner's hypermodel path.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping

import keras_tuner
import tf_keras as keras
from keras_tuner.src.engine import trial as trial_module
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from components.models.registry import build_and_compile
from components.training import train_input
from components.training.training_config import TrainingConfig
from components.training.training_loop import fit, input_datasets, make_reproducible
from schema.contract import TRAINING_ACCURACY_METRIC

log = logging.getLogger(__name__)
OBJECTIVE = f"val_{TRAINING_ACCURACY_METRIC}"


def search_space(config: TrainingConfig) -> keras_tuner.HyperParameters:
    """The selected architecture's search space (its config group's `search_space`)."""
    hp = keras_tuner.HyperParameters()
    type(getattr(config, config.model)).search_space(hp)
    return hp


def apply_hyperparameters(config: TrainingConfig, values: Mapping[str, Any]) -> TrainingConfig:
    """`config` with tuned values set by their setting names; validated (a bad value is an error)."""
    return config.with_settings(dict(values)).validate()


def values_from_config(hyperparameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The values of a KerasTuner HyperParameters config (what the Tuner's best_hyperparameters
    artifact holds and the Trainer hands run_fn as fn_args.hyperparameters)."""
    if not hyperparameters:
        return {}
    return dict(keras_tuner.HyperParameters.from_config(dict(hyperparameters)).values)


class DeadlineOracle(keras_tuner.oracles.RandomSearchOracle):
    """Random search that starts no trial after its deadline (time.monotonic())."""

    def __init__(self, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        if time.monotonic() >= self.deadline:
            log.info("tuning budget in minutes spent: no trial after %d", len(self.trials))
            return {"status": trial_module.TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)


class StopAtDeadline(keras.callbacks.Callback):
    """Ends a trial's training at the deadline (after the current batch)."""

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if time.monotonic() >= self.deadline:
            self.model.stop_training = True


class ProjectTuner(keras_tuner.Tuner):
    """Each trial: the config with the trial's values, built and trained as run_fn does."""

    def __init__(self, config: TrainingConfig, epochs: int, steps_per_epoch: int, deadline: float,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config, self.epochs, self.steps_per_epoch, self.deadline = config, epochs, steps_per_epoch, deadline

    def run_trial(self, trial: Any, train: Any, validation: Any) -> float:
        config = apply_hyperparameters(self.config, trial.hyperparameters.values)
        log.info("trial %s: %s", trial.trial_id, trial.hyperparameters.values)
        keras.backend.clear_session()
        keras.utils.set_random_seed(config.seed)
        model = build_and_compile(config, steps_per_epoch=self.steps_per_epoch, epochs=self.epochs)
        history = fit(model, train, validation, self.epochs, config, [StopAtDeadline(self.deadline)])
        return max(history.history[OBJECTIVE])


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    """The Tuner for the TrainingConfig and budget in custom_config (PipelineConfig.tuner_config)."""
    custom = fn_args.custom_config or {}
    config = TrainingConfig.from_custom_config(custom["training"])
    trials, epochs, minutes = int(custom["trials"]), int(custom["epochs"]), float(custom["minutes"])
    deadline = time.monotonic() + minutes * 60
    make_reproducible(config.seed)

    files = train_input.shard_files(fn_args.train_files)
    settings = train_input.InputSettings.from_training(config)
    total = config.train_examples or train_input.count_records(files, settings.read_parallelism)
    n_train, n_val = train_input.split_sizes(int(total), settings.validation_every)
    import tensorflow_transform as tft

    spec = tft.TFTransformOutput(fn_args.transform_graph_path).transformed_feature_spec()
    train, validation = input_datasets(config, files, spec, n_train, n_val, config.batch_size)
    log.info("tuning %s: %d trial(s) of %d epoch(s), at most %g min, on %d training rows, scored on "
             "the %d rows of the validation slice", config.model, trials, epochs, minutes, n_train, n_val)
    oracle = DeadlineOracle(objective=keras_tuner.Objective(OBJECTIVE, "max"), max_trials=trials,
                            hyperparameters=search_space(config), tune_new_entries=False,
                            seed=config.seed, deadline=deadline)
    tuner = ProjectTuner(config, epochs, -(-n_train // config.batch_size), deadline, oracle=oracle,
                         directory=fn_args.working_dir, project_name="search", overwrite=True)
    return TunerFnResult(tuner=tuner, fit_kwargs={"train": train, "validation": validation})
