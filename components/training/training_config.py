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

from components.errors import FmnistError
from components.models.configs import CnnConfig, ResNetConfig
from schema import contract

# Keras's mixed-precision policy names `precision` accepts, and "auto": mixed_bfloat16 where the
# CPU computes bfloat16 natively and no GPU is present, else float32
# (components/models/registry.py, resolved_precision).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


class ConfigError(FmnistError, ValueError):
    """A config value a user set is unusable; the message names the field."""


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """What run_fn trains with: the architecture and its size, optimisation, Trainer input."""
    # The architecture run_fn builds, by its registered name (components/models/registry.py); its
    # settings are the config group of the same name at the end of this class (`--set model=resnet
    # --set resnet.width=32`).
    model: str = "cnn"
    epochs: int = 12
    # The global batch: examples per optimizer step over all replicas, whatever their number
    # (components/training/strategy.py, replica_batches: each replica computes batch_size / replicas of it and
    # the learning rate stays as set), so N GPUs or workers take the same steps as one.
    batch_size: int = 128
    learning_rate: float = 2e-3
    # Every round(1 / validation_fraction)-th training row is held out for early stopping.
    validation_fraction: float = 0.1
    early_stopping_patience: int = 3
    seed: int = 42
    # Trainer input (components/training/train_input.py): a bounded shuffle buffer (examples; 60,000 images
    # are ~190 MB, the whole Fashion-MNIST split, so 1x shuffles fully), and the parsed split
    # cached in memory only when it is at most cache_max_mb (1x: ~170 MB, cached; 10x: ~1.7 GB,
    # streamed from Transform's shards every epoch).
    shuffle_buffer: int = 60_000
    cache_max_mb: int = 1024
    # Test images drawn in the TensorBoard embedding projector after training.
    projector_examples: int = 2000
    # Shared by every architecture: augmentation layers in front of the builder's network (active
    # only in training; components/models/registry.py) and label smoothing in the shared loss
    # (components/models/compile.py).
    augment: bool = False
    label_smoothing: float = 0.0
    # Polyak averaging of the weights (components/models/compile.py): 0 = off; 0.99 averages over the
    # last ~100 steps. At a high learning rate the running weights jitter from epoch to epoch and
    # their average scores higher, most of all early in a run (the `fast` preset, BENCHMARKS.md).
    ema_momentum: float = 0.0
    # The Keras mixed-precision policy training runs under (PRECISIONS): "mixed_bfloat16" computes
    # in bfloat16 with float32 weights, faster for the CNN on a CPU with AVX512_BF16 or AMX but
    # slower where bfloat16 is emulated, hence "auto" in the `fast` preset (BENCHMARKS.md, "A stronger
    # default"); "mixed_float16" is the GPU's. Training only: the exported SavedModel is always a
    # float32 copy (components/models/registry.py, float32_copy).
    precision: str = "float32"
    # Warm start (components/training/warm_start.py; span mode only -- create_pipeline turns it off for the
    # plain pipeline): from the served model when the architecture matches, training
    # warm_start_epochs instead of epochs.
    warm_start: bool = True
    warm_start_epochs: int = 3
    # Set by the Trainer (components/custom_components.py) from StatisticsGen's num_examples of the
    # training split; 0 = unknown, run_fn counts the records in one streaming pass.
    train_examples: int = 0
    # The registered architectures: one config group each, named as the architecture (the name
    # `model` selects); the group's class names its builder. A new architecture is one more line
    # here (components/models/configs.py has the classes and their defaults).
    cnn: CnnConfig = CnnConfig()
    resnet: ResNetConfig = ResNetConfig()

    def validate(self) -> "TrainingConfig":
        checks = [
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("learning_rate", self.learning_rate > 0, "must be > 0"),
            ("model", self.model in group_names(),
             f"is not a registered architecture; registered: {', '.join(sorted(group_names()))}"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            ("ema_momentum", 0 <= self.ema_momentum < 1, "must be in [0, 1) (0: no averaging)"),
            ("precision", self.precision in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
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
        for name in group_names():
            group = getattr(self, name)
            for field, ok, why in group.checks():
                if not ok:
                    raise ConfigError(f"config field '{name}.{field}' = {getattr(group, field)!r} {why}")
        return self

    def to_custom_config(self) -> dict[str, Any]:
        """JSON-serialisable form for the Trainer's custom_config (groups as nested mappings)."""
        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return list(value) if isinstance(value, tuple) else value
        return plain(dataclasses.asdict(self))

    def with_settings(self, settings: Mapping[str, Any]) -> "TrainingConfig":
        """A copy with settings changed, keyed as on the command line: 'epochs', 'resnet.width', or a
        group's name with a mapping of its fields (YAML's `resnet: {width: 32}`) or a group instance.

        Values must already have their field's type (pipeline/config.py coerces `--set` strings);
        an unknown key is a ConfigError naming it. Not validated: the caller validates once."""
        plain: dict[str, Any] = {}
        groups: dict[str, dict[str, Any]] = {}
        for key, value in flatten_settings(settings).items():
            if key not in setting_fields():
                raise ConfigError(unknown_message([key], setting_fields()))
            if "." in key:
                name, field = key.split(".", 1)
                groups.setdefault(name, {})[field] = value
            else:   # a plain field, or a whole group as an instance
                plain[key] = value
        for name, fields in groups.items():
            plain[name] = dataclasses.replace(plain.get(name, getattr(self, name)), **fields)
        return dataclasses.replace(self, **plain)

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
        groups = {f.name: f.default for f in dataclasses.fields(cls) if f.name in group_names()}
        for name, default in groups.items():
            if name in values:
                values[name] = _group_from_json(type(default), values[name], f"Trainer custom_config '{name}'")
        return cls(**values).validate()


def field_names() -> tuple[str, ...]:
    """TrainingConfig's own field names (a config group counts as one: 'cnn')."""
    return tuple(f.name for f in dataclasses.fields(TrainingConfig))


def group_names() -> tuple[str, ...]:
    """The architectures that have a config group: the fields whose default is a dataclass."""
    return tuple(f.name for f in dataclasses.fields(TrainingConfig) if dataclasses.is_dataclass(f.default))


def setting_fields() -> dict[str, dataclasses.Field]:
    """Every settable key and its dataclass field: 'epochs', ..., 'cnn.dropout', 'resnet.width'; a
    group's own name too (set as a whole, from a mapping or an instance)."""
    out = {f.name: f for f in dataclasses.fields(TrainingConfig)}
    for name in group_names():
        out.update({f"{name}.{f.name}": f for f in dataclasses.fields(getattr(TrainingConfig, name))})
    return out


def flatten_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """{'resnet': {'width': 32}} -> {'resnet.width': 32}; other keys unchanged (YAML's nested form)."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if key in group_names() and isinstance(value, Mapping):
            out.update({f"{key}.{field}": v for field, v in value.items()})
        else:
            out[key] = value
    return out


def unknown_message(unknown: list[str], known: Mapping[str, Any] | list[str]) -> str:
    """'unknown config field(s) [...]', with the group a moved model setting now lives in."""
    hints = [f"'{key}' is now '{name}.{key}'" for key in unknown for name in group_names()
             if f"{name}.{key}" in setting_fields()]
    hint = f" (model settings sit in their architecture's group: {'; '.join(hints)})" if hints else ""
    return f"unknown config field(s) {sorted(unknown)}{hint}; known: {sorted(known)}"


def _group_from_json(cls: type, values: Any, where: str) -> Any:
    """A config group back from its JSON mapping; unknown keys are an error, lists become tuples."""
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, got {values!r}")
    fields = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {unknown}; known: {sorted(fields)}")
    out = {}
    for name, value in values.items():
        if fields[name].startswith("tuple[int") and not isinstance(value, str):
            value = tuple(int(v) for v in value)
        elif fields[name].startswith("tuple") and not isinstance(value, str):
            value = tuple(value)
        out[name] = value
    return cls(**out)
