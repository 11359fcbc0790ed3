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

import dataclasses
import importlib
import logging
from typing import Any, Callable

import tensorflow as tf
import tf_keras as keras

from components.errors import FmnistError
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


class ModelContractError(FmnistError, ValueError):
    """A registered architecture built a model without a name the contract requires of every model."""


def build_model(config: TrainingConfig = TrainingConfig()) -> keras.Model:
    """The uncompiled model `config.model` names, sized by its config group, contract checked.

    Built under `config.precision`'s mixed-precision policy (layers take the global policy when they
    are created, so it is set for the build only). Compile it with
    components.models.compile.compile_model (the same for every architecture)."""
    if config.model not in BUILDERS:
        raise ConfigError(f"config field 'model' = {config.model!r} is not a registered architecture; "
                          f"registered: {', '.join(sorted(BUILDERS))}")
    precision = resolved_precision(config)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name=IMAGE_KEY, dtype=tf.float32)
        x = inputs
        if config.augment:
            # Active only in training: small shifts, as garments are not always centred; mirror
            # images are still the same garment.
            x = keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", name="shift")(x)
            x = keras.layers.RandomFlip("horizontal", name="flip")(x)
        outputs = BUILDERS[config.model](x, getattr(config, config.model))
        model = keras.Model(inputs, outputs, name=f"fmnist_{config.model}")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    check_contract(model, config.model)
    log.info("model %s: %d parameters, training precision %s (precision=%s)", config.model,
             model.count_params(), precision, config.precision)
    return model


# The CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic that oneDNN uses: AVX512_BF16
# (AMD Zen 4, Intel Cooper Lake and later) and AMX (Intel Sapphire Rapids and later).
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def resolved_precision(config: TrainingConfig, cpuinfo: str = "/proc/cpuinfo") -> str:
    """The Keras policy `config.precision` means here: itself, or for "auto" mixed_bfloat16 on a
    CPU-only machine whose CPU has native bfloat16 instructions, else float32 (GPUs are left to
    an explicit "mixed_float16": its speed and accuracy here are unmeasured)."""
    if config.precision != "auto":
        return config.precision
    if tf.config.list_physical_devices("GPU"):
        return "float32"
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "float32"
    return "mixed_bfloat16" if any(flag in flags for flag in BFLOAT16_CPU_FLAGS) else "float32"


def float32_copy(model: keras.Model, config: TrainingConfig) -> keras.Model:
    """The model to export and serve: `model` itself when it was trained in float32, else the same
    architecture built in float32 holding its weights (a mixed-precision model's variables are
    float32 already, so the copy is exact). A served model then computes in float32 on any CPU,
    not only on one with bfloat16 instructions, and carries no casts."""
    if resolved_precision(config) == "float32":
        return model
    copy = build_model(dataclasses.replace(config, precision="float32"))
    copy.set_weights(model.get_weights())
    return copy


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
    if model.outputs[0].dtype != tf.float32:
        raise broken(f"computes '{PROBABILITIES_OUTPUT}' in {model.outputs[0].dtype.name}: under mixed "
                     "precision the output layer must be created with dtype='float32' (softmax in float32)")
    if tuple(model.output_shape) != (None, NUM_CLASSES):
        raise broken(f"has output shape {model.output_shape} instead of (None, {NUM_CLASSES}) class "
                     f"probabilities in '{PROBABILITIES_OUTPUT}'")


def build_and_compile(config: TrainingConfig, steps_per_epoch: int | None = None,
                      epochs: int | None = None) -> keras.Model:
    """build_model, then the shared compile_model: what the Trainer, the benchmarks and the GPU
    check train (under a distribution strategy, call it inside the strategy's scope)."""
    return compile_model(build_model(config), config, steps_per_epoch, epochs)
