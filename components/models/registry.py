"""The registered architectures' builders, and `build_model`: the one way the project builds a model.

A builder takes the image tensor [N, 28, 28, 1] in [0, 1] (after the shared augmentation, if on)
and its architecture's config group, and returns the class probabilities tensor; `build_model`
wraps it into an uncompiled Keras model named `fmnist_<name>` and checks the names every model
must provide (schema/contract.py) before anything trains on it, so a new architecture that forgets
one fails here, naming the architecture and the name, not in the projector or the export later.

BUILDERS is derived, not written: one entry per config group of TrainingConfig (the registration,
components/training/training_config.py), its function the one the group's class names (`builder`,
components/models/configs.py), imported here because the config side must not import TensorFlow.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any, Callable

import tensorflow as tf
import tf_keras as keras

from components.models.compile import compile_model
from components.training.training_config import ConfigError, TrainingConfig, group_names
from schema.contract import EMBEDDING_LAYER, IMAGE_KEY, IMAGE_SIZE, NUM_CLASSES, PROBABILITIES_OUTPUT

log = logging.getLogger(__name__)

Builder = Callable[[tf.Tensor, Any], tf.Tensor]


def _import_builder(path: str) -> Builder:
    """'package.module:function' -> the function (a typo fails when this module is imported)."""
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


BUILDERS: dict[str, Builder] = {name: _import_builder(type(getattr(TrainingConfig, name)).builder)
                                for name in group_names()}


class ModelContractError(ValueError):
    """A registered architecture built a model without a name the contract requires of every model."""


def build_model(config: TrainingConfig = TrainingConfig()) -> keras.Model:
    """The uncompiled model `config.model` names, sized by its config group, contract checked.

    Compile it with components.models.compile.compile_model (the same for every architecture)."""
    if config.model not in BUILDERS:
        raise ConfigError(f"config field 'model' = {config.model!r} is not a registered architecture; "
                          f"registered: {', '.join(sorted(BUILDERS))}")
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name=IMAGE_KEY, dtype=tf.float32)
    x = inputs
    if config.augment:
        # Active only in training: small shifts, as garments are not always centred; mirror images
        # are still the same garment.
        x = keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", name="shift")(x)
        x = keras.layers.RandomFlip("horizontal", name="flip")(x)
    outputs = BUILDERS[config.model](x, getattr(config, config.model))
    model = keras.Model(inputs, outputs, name=f"fmnist_{config.model}")
    check_contract(model, config.model)
    log.info("model %s: %d parameters", config.model, model.count_params())
    return model


def check_contract(model: keras.Model, architecture: str) -> None:
    """Refuse a model without the layers the projector and the export read (schema/contract.py)."""
    builder = BUILDERS.get(architecture)
    where = f" ({builder.__module__}.{builder.__qualname__})" if builder else ""

    def broken(what: str) -> ModelContractError:
        return ModelContractError(f"architecture '{architecture}'{where} builds a model that {what}; "
                                  "every registered model must provide it")

    names = [layer.name for layer in model.layers]
    if EMBEDDING_LAYER not in names:
        raise broken(f"has no layer named '{EMBEDDING_LAYER}' (schema/contract.py EMBEDDING_LAYER: the "
                     "penultimate features, read by the TensorBoard projector)")
    if len(model.outputs) != 1 or model.output_names != [PROBABILITIES_OUTPUT]:
        raise broken(f"does not end in one output layer named '{PROBABILITIES_OUTPUT}' (schema/contract.py "
                     f"PROBABILITIES_OUTPUT; its outputs come from {model.output_names})")
    if tuple(model.output_shape) != (None, NUM_CLASSES):
        raise broken(f"has output shape {model.output_shape} instead of (None, {NUM_CLASSES}) class "
                     f"probabilities in '{PROBABILITIES_OUTPUT}'")


def build_and_compile(config: TrainingConfig, steps_per_epoch: int | None = None,
                      epochs: int | None = None) -> keras.Model:
    """build_model, then the shared compile_model: what the Trainer, the benchmarks and the GPU
    check train (under a distribution strategy, call it inside the strategy's scope)."""
    return compile_model(build_model(config), config, steps_per_epoch, epochs)
