"""Each architecture's config group: one frozen dataclass per architecture, its defaults here.

An architecture is registered by one field of TrainingConfig (components/training/training_config.py) that
holds its group under the architecture's name (`config.cnn`, `config.resnet`): `--set
resnet.width=32` or a YAML `resnet: {width: 32}` sets it like any other field, `--set model=resnet`
selects it, and the group's `builder` names the function that builds it
(components/models/registry.py imports it). Only the selected model's group is used; the others
ride along unused and stay visible in the run's config.

No TensorFlow import: the CLI and the config loader use this module before TensorFlow starts, which
is why a builder is named here by its import path rather than imported.

Each group also declares its architecture's hyperparameter search space (`search_space(hp)`, used
by the optional Tuner, components/training/tuner.py): one place per architecture, beside its defaults.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True)
class CnnConfig:
    """Blocks of 3x3 convolutions (batch norm, ReLU, max-pooling), one dense layer, softmax."""
    builder: ClassVar[str] = "components.models.cnn:build_cnn"
    # One block per entry: its filter count; each block halves the image with max-pooling.
    conv_filters: tuple[int, ...] = (32, 64)
    convs_per_block: int = 1
    dense_units: int = 128
    dropout: float = 0.3
    # Dropout after each conv block; early blocks overfit less than the dense head, hence half.
    conv_dropout: float = 0.15
    # Pool each block right after its last convolution, before batch norm and ReLU: max-pooling
    # commutes with ReLU and with a positively scaled BN, so the function class is nearly the
    # same, but BN and ReLU then run on a quarter of the activations (~25% less time per epoch
    # on CPU, measured in benchmarks/training_speed.py).
    pool_before_norm: bool = False

    @staticmethod
    def search_space(hp: Any) -> None:
        """What `--set tune=true` searches (components/training/tuner.py), declared on a KerasTuner
        HyperParameters `hp`; each name is the setting's key (`cnn.dense_units`, `learning_rate`)
        and the Trainer applies the best values over the config by those names."""
        hp.Choice("cnn.dense_units", [64, 128, 256, 512])
        hp.Float("cnn.dropout", 0.1, 0.5, step=0.1)
        hp.Float("learning_rate", 5e-4, 5e-3, sampling="log")

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            ("conv_filters", len(self.conv_filters) >= 1 and min(self.conv_filters) >= 1,
             "must be one or more filter counts >= 1"),
            ("convs_per_block", self.convs_per_block >= 1, "must be >= 1"),
            ("dense_units", self.dense_units >= 1, "must be >= 1"),
            ("dropout", 0 <= self.dropout < 1, "must be in [0, 1)"),
            ("conv_dropout", 0 <= self.conv_dropout < 1, "must be in [0, 1)"),
        ]


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """A small pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks").

    The defaults are sized for 28x28x1 on a CPU: a 3x3 stem, three stages at 28x28, 14x14 and 7x7
    of two residual blocks each (13 convolutions in all), `width` filters in the first stage,
    doubled at each stride-2 stage, then global average pooling: 175,706 parameters (the default
    CNN: 422,314) for ~20 M multiply-adds per image (the CNN: ~4.2 M).
    """
    builder: ClassVar[str] = "components.models.resnet:build_resnet"
    width: int = 16
    stages: int = 3
    blocks_per_stage: int = 2
    # Dropout between the two convolutions of each block (as in wide ResNets); 0 = none.
    block_dropout: float = 0.0
    # Dropout on the pooled features before the classifier.
    dropout: float = 0.0

    @staticmethod
    def search_space(hp: Any) -> None:
        """What `--set tune=true` searches: the first stage's width and the learning rate."""
        hp.Choice("resnet.width", [16, 32, 48, 64])
        hp.Float("learning_rate", 5e-4, 5e-3, sampling="log")

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            ("width", self.width >= 1, "must be >= 1"),
            # Two stride-2 stages take 28 to 7; a fourth would go to 4 (padding 'same'), still fine.
            ("stages", 1 <= self.stages <= 4, "must be in [1, 4] (each stage after the first halves 28x28)"),
            ("blocks_per_stage", self.blocks_per_stage >= 1, "must be >= 1"),
            ("block_dropout", 0 <= self.block_dropout < 1, "must be in [0, 1)"),
            ("dropout", 0 <= self.dropout < 1, "must be in [0, 1)"),
        ]

