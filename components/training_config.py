"""The training settings: one dataclass, one set of defaults, from the CLI to the Trainer's run_fn.

`pipeline/config.py`'s PipelineConfig holds one of these (`config.training`); `create_pipeline`
passes it to the Trainer as `custom_config` (`to_custom_config`, plain JSON) and `run_fn` reads the
very same dataclass back (`from_custom_config`), so a default is written once, here, and a field
the Trainer does not know is an error instead of being silently ignored.

No TensorFlow import: the CLI and the config loader use this module before TensorFlow starts.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from schema import contract


class ConfigError(ValueError):
    """A config value a user set is unusable; the message names the field."""


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """What run_fn trains with: optimisation, Trainer input and model size."""
    epochs: int = 12
    # The global batch: examples per optimizer step over all replicas, whatever their number
    # (components/strategy.py, replica_batches: each replica computes batch_size / replicas of it and
    # the learning rate stays as set), so N GPUs or workers take the same steps as one.
    batch_size: int = 128
    learning_rate: float = 2e-3
    # Every round(1 / validation_fraction)-th training row is held out for early stopping.
    validation_fraction: float = 0.1
    early_stopping_patience: int = 3
    seed: int = 42
    # Trainer input (components/train_input.py): a bounded shuffle buffer (examples; 60,000 images
    # are ~190 MB, the whole Fashion-MNIST split, so 1x shuffles fully), and the parsed split
    # cached in memory only when it is at most cache_max_mb (1x: ~170 MB, cached; 10x: ~1.7 GB,
    # streamed from Transform's shards every epoch).
    shuffle_buffer: int = 60_000
    cache_max_mb: int = 1024
    # Test images drawn in the TensorBoard embedding projector after training.
    projector_examples: int = 2000
    # Model (components/model.py).
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
    augment: bool = False
    label_smoothing: float = 0.0
    # Warm start (components/warm_start.py; span mode only -- create_pipeline turns it off for the
    # plain pipeline): from the served model when the architecture matches, training
    # warm_start_epochs instead of epochs.
    warm_start: bool = True
    warm_start_epochs: int = 3
    # Set by the Trainer (components/custom_components.py) from StatisticsGen's num_examples of the
    # training split; 0 = unknown, run_fn counts the records in one streaming pass.
    train_examples: int = 0

    def validate(self) -> "TrainingConfig":
        checks = [
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("learning_rate", self.learning_rate > 0, "must be > 0"),
            ("dropout", 0 <= self.dropout < 1, "must be in [0, 1)"),
            ("conv_dropout", 0 <= self.conv_dropout < 1, "must be in [0, 1)"),
            ("validation_fraction", 0 < self.validation_fraction < 1, "must be in (0, 1)"),
            ("early_stopping_patience", self.early_stopping_patience >= 0, "must be >= 0"),
            ("shuffle_buffer", self.shuffle_buffer >= 1, "must be >= 1"),
            ("cache_max_mb", self.cache_max_mb >= 0, "must be >= 0 (0: never cache)"),
            ("projector_examples", self.projector_examples >= 0, "must be >= 0 (0: no projector)"),
            ("warm_start_epochs", self.warm_start_epochs >= 1, "must be >= 1"),
            ("train_examples", self.train_examples >= 0, "must be >= 0 (0: count the records)"),
        ]
        for field, ok, why in checks:
            if not ok:
                raise ConfigError(f"config field '{field}' = {getattr(self, field)!r} {why}")
        return self

    def to_custom_config(self) -> dict[str, Any]:
        """JSON-serialisable form for the Trainer's custom_config."""
        out = dataclasses.asdict(self)
        out["conv_filters"] = list(self.conv_filters)
        return out

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> "TrainingConfig":
        """The dataclass back from the Trainer's custom_config; unknown keys are an error.

        The keys of the launcher that started this replica (contract.LAUNCHER_KEYS: a Vertex
        CustomJob's or a TFJob's settings, which TFX passes on to every replica) are not training
        settings and are dropped; anything else unknown is still a typo to refuse."""
        values = {k: v for k, v in (custom_config or {}).items() if k not in contract.LAUNCHER_KEYS}
        unknown = sorted(set(values) - set(field_names()))
        if unknown:
            raise ConfigError(f"Trainer custom_config has unknown field(s) {unknown}; known: {sorted(field_names())}")
        if "conv_filters" in values:
            values["conv_filters"] = tuple(int(v) for v in values["conv_filters"])
        return cls(**values).validate()


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrainingConfig))
