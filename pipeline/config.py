"""The one object `create_pipeline` is built from, and how users set it.

A config is a frozen dataclass so a run's settings are explicit and hashable into logs. It comes
from a named preset (`sample`, `default`, `fast`), optionally a YAML file, then `key=value`
overrides from the command line, in that order. Paths are kept as strings because the same config
is compiled for Kubeflow, where they are URIs.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from components.data_input.split_files import DEFAULT_MAX_DUPLICATE_SHARE
from components.decision import POLICIES, DecisionPolicy
from components.training.training_config import (
    ConfigError,
    TrainingConfig,
    flatten_settings,
    setting_fields as training_settings,
    unknown_message,
)
from pipeline.sources import SOURCES
from schema.contract import HOLDOUT_SPLIT, TEST_SPLIT, TRAIN_SPLIT

__all__ = ["PRESETS", "ConfigError", "PipelineConfig", "TrainingConfig", "load_config"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = PROJECT_ROOT / "data" / "sample"
SCHEMA_DIR = PROJECT_ROOT / "schema"
DEFAULT_OUTPUT = PROJECT_ROOT / "outputs"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    pipeline_name: str = "fmnist"
    # Data: a directory holding a training and a test CSV (Kaggle layout, optionally .gz).
    # Patterns are globs over whole file names in data_root (README "Data"); backups and hidden
    # files never match; each split must match exactly its *_file_count files, no file two splits.
    data_root: str = str(SAMPLE_DATA)
    train_pattern: str = "*_train.csv*"
    test_pattern: str = "*_test.csv*"
    train_file_count: int = 1
    test_file_count: int = 1
    # Above this share of the test split's images also found in the training split, the run stops.
    max_duplicate_share: float = DEFAULT_MAX_DUPLICATE_SHARE
    # What the files are (pipeline/sources/: the one place a source is chosen): "csv" (the Kaggle
    # layout above) or "tfrecord" (TFRecord files of tf.Examples in the Examples layout; set the
    # patterns to their names).
    data_format: str = "csv"
    schema_dir: str = str(SCHEMA_DIR)
    # Outputs.
    output_root: str = str(DEFAULT_OUTPUT)
    model_name: str = "fmnist"
    serving_root: str = ""          # default: <output_root>/serving
    # Training, model and Trainer input: components/training/training_config.py (its fields are set by name,
    # e.g. `--set epochs=20`, like this class's own; an architecture's as `--set resnet.width=32`).
    training: TrainingConfig = TrainingConfig()
    # Blessing: TFMA's thresholds (overall accuracy, each class's recall), then -- when a model is
    # served -- the paired test against it (components/decision.py; README "Blessing"). The floor's
    # default sits below the weakest class (Shirt) of the full-data models in BENCHMARKS.md.
    accuracy_threshold: float = 0.915
    class_recall_floor: float = 0.70
    significance_level: float = DecisionPolicy.significance_level
    no_evidence_policy: str = DecisionPolicy.no_evidence
    max_regression: float = DecisionPolicy.max_regression
    max_class_drop: float = DecisionPolicy.max_class_drop
    # Servability (InfraValidator): test rows sent as Predict + Classify requests (and shipped in the
    # pushed model as TF Serving warm-up records), then a bounded single-image load whose p99 must
    # stay under the limit (0 = no latency gate).
    infra_num_examples: int = 10
    infra_latency_requests: int = 200
    infra_latency_p99_ms: float = 250.0
    # Continuous training (README "Continuous training"; components/spans.py): data_root holds
    # span-<N>/ directories, only the newest span is ingested, training uses the last span_window
    # spans (older ones from span_store, never re-parsed), evaluation the newest span's test split
    # plus the fixed holdout (holdout_root, default <data_root>/holdout).
    spans: bool = False
    span_window: int = 3
    holdout_root: str = ""
    span_store: str = ""            # default: <output_root>/spans/<pipeline_name>
    # Warm start (span mode): TrainingConfig.warm_start / warm_start_epochs.
    # Hyperparameter search (README "Tuning"; components/training/tuner.py): TFX's Tuner before the Trainer,
    # KerasTuner's random search over the architecture's search_space, at most tune_trials trials
    # of tune_epochs epochs each and no trial started after tune_minutes; scored on the training
    # split's validation slice, the Trainer then trains with the best values.
    tune: bool = False
    tune_trials: int = 10
    tune_epochs: int = 3
    tune_minutes: float = 60.0
    # Execution.
    enable_cache: bool = True
    # No Beam arguments = Beam's defaults: DirectRunner, in_memory, one worker -- faster and smaller
    # than multi_processing x2 at 1x and 10x (BENCHMARKS.md "Scale"), so kept at every input size.
    # Empty on purpose: given any Beam arguments without a dependency flag, TFX packages itself into
    # a tfx_ephemeral sdist for every Beam component (tfx/utils/dependency_utils.py), which only
    # remote workers need -- seconds and a sdist under /tmp per component, never removed
    # (BENCHMARKS.md, "Scale on one machine"). Other runners:
    # README "Scale".
    beam_args: tuple[str, ...] = ()

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_root, "pipelines", self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_root, "metadata", self.pipeline_name, "metadata.db")

    @property
    def serving_model_dir(self) -> str:
        """Where Pusher writes `<integer version>/`: TF Serving's `<base>/<model name>/` layout."""
        base = self.serving_root or os.path.join(self.output_root, "serving")
        return os.path.join(base, self.model_name)

    @property
    def span_store_dir(self) -> str:
        """Where each accepted span's Examples and statistics are kept for later windows."""
        return self.span_store or os.path.join(self.output_root, "spans", self.pipeline_name)

    @property
    def holdout_dir(self) -> str:
        """The fixed holdout's directory (span mode): never changes between runs."""
        return self.holdout_root or self.data_root.rstrip("/") + "/" + HOLDOUT_SPLIT

    def validate(self) -> "PipelineConfig":
        self.training.validate()
        checks = [
            ("accuracy_threshold", 0 <= self.accuracy_threshold <= 1, "must be in [0, 1]"),
            ("class_recall_floor", 0 <= self.class_recall_floor <= 1, "must be in [0, 1] (0: no floor)"),
            ("significance_level", 0 < self.significance_level < 1, "must be in (0, 1)"),
            ("no_evidence_policy", self.no_evidence_policy in POLICIES, f"must be one of {', '.join(POLICIES)}"),
            ("max_regression", 0 <= self.max_regression < 1, "must be in [0, 1)"),
            ("max_class_drop", 0 <= self.max_class_drop < 1, "must be in [0, 1)"),
            ("infra_num_examples", self.infra_num_examples >= 1, "must be >= 1"),
            ("infra_latency_requests", self.infra_latency_requests >= 1, "must be >= 1"),
            ("infra_latency_p99_ms", self.infra_latency_p99_ms >= 0, "must be >= 0 (0: no latency gate)"),
            ("model_name", self.model_name.replace("_", "").replace("-", "").isalnum(),
             "must be letters, digits, '-' or '_'"),
            ("train_file_count", self.train_file_count >= 1, "must be >= 1"),
            ("test_file_count", self.test_file_count >= 1, "must be >= 1"),
            ("max_duplicate_share", 0 <= self.max_duplicate_share <= 1, "must be in [0, 1]"),
            ("tune_trials", self.tune_trials >= 1, "must be >= 1"),
            ("tune_epochs", self.tune_epochs >= 1, "must be >= 1"),
            ("tune_minutes", self.tune_minutes > 0, "must be > 0"),
            ("span_window", self.span_window >= 1, "must be >= 1 (spans in the training window)"),
            ("data_format", self.data_format in SOURCES, f"must be one of {', '.join(SOURCES)}"),
            ("test_pattern", self.test_pattern != self.train_pattern,
             "must differ from train_pattern (a file may feed one split only)"),
        ]
        for field, ok, why in checks:
            if not ok:
                raise ConfigError(f"config field '{field}' = {getattr(self, field)!r} {why}")
        for field in ("train_pattern", "test_pattern"):
            pattern = getattr(self, field)
            if not pattern.strip() or "/" in pattern or "\\" in pattern:
                raise ConfigError(f"config field '{field}' = {pattern!r} must be a non-empty file-name "
                                  "pattern without a directory part (it matches names in data_root)")
        return self

    def tuner_config(self) -> dict[str, Any]:
        """The Tuner's custom_config (components/training/tuner.py, tuner_fn): the training config and the budget."""
        return {"training": self.training.to_custom_config(), "trials": self.tune_trials,
                "epochs": self.tune_epochs, "minutes": self.tune_minutes}

    def decision_policy(self) -> DecisionPolicy:
        """What the Evaluator's paired test uses (its defaults are DecisionPolicy's)."""
        return DecisionPolicy(significance_level=self.significance_level, no_evidence=self.no_evidence_policy,
                              max_regression=self.max_regression, max_class_drop=self.max_class_drop)

    def data_input_options(self) -> dict[str, Any]:
        """What FastCsvExampleGen checks beyond the split patterns (its custom_config)."""
        return {"file_counts": {TRAIN_SPLIT: self.train_file_count, TEST_SPLIT: self.test_file_count},
                "max_duplicate_share": self.max_duplicate_share}

    def replace(self, **changes: Any) -> "PipelineConfig":
        """A copy with fields changed; training fields are given by name like the others, an
        architecture's group as a mapping (`replace(epochs=1, cnn={"dense_units": 8})`)."""
        training = {k: changes.pop(k) for k in list(changes) if k in training_settings()}
        if training:
            changes["training"] = changes.get("training", self.training).with_settings(training)
        return dataclasses.replace(self, **changes).validate()


PRESETS: dict[str, dict[str, Any]] = {
    # The embedded default: the committed 2,500/600-row sample, a few epochs, a threshold the
    # sample can meet, so `make run` finishes in minutes on a laptop.
    "sample": {"pipeline_name": "fmnist-sample", "output_root": str(DEFAULT_OUTPUT / "sample"),
               "epochs": 8, "batch_size": 64, "accuracy_threshold": 0.6, "class_recall_floor": 0.3,
               "early_stopping_patience": 3},
    # The committed sample split into two spans (data/sample-spans, tools/make_span_sample.py):
    # `make run-spans` runs span 1, then span 2 (warm start, compared with span 1's served model).
    "sample-spans": {"pipeline_name": "fmnist-sample-spans", "output_root": str(DEFAULT_OUTPUT / "sample-spans"),
                     "data_root": str(PROJECT_ROOT / "data" / "sample-spans"), "spans": True,
                     "epochs": 8, "warm_start_epochs": 3, "batch_size": 64, "accuracy_threshold": 0.6,
                     "class_recall_floor": 0.3, "early_stopping_patience": 3},
    # The full data set's production settings: two convolutions per block, label smoothing.
    "default": {"cnn.convs_per_block": 2, "cnn.dropout": 0.35, "cnn.conv_dropout": 0.175,
                "label_smoothing": 0.1, "epochs": 18, "early_stopping_patience": 5},
    # One convolution per block, pooled before its batch norm, no dropout in the conv blocks,
    # batch 256, bfloat16 where the CPU has it, 12 epochs; the weights' moving average (0.98: the
    # last ~50 steps) is what is validated and kept, which crosses 91.5% an epoch sooner, and label
    # smoothing lifts the end (BENCHMARKS.md "A stronger default?").
    "fast": {"epochs": 12, "batch_size": 256, "learning_rate": 4e-3, "cnn.pool_before_norm": True,
             "cnn.conv_dropout": 0.0, "cnn.dropout": 0.2, "precision": "auto", "ema_momentum": 0.98,
             "label_smoothing": 0.1, "early_stopping_patience": 5},
    # The strongest model for one GPU (README "Presets for a GPU"): the Fashion-MNIST benchmark's best
    # entries are wide ResNets (WRN-28-10 and kin, 96.3-96.7%) trained with random crops and flips
    # and a cosine schedule. Here a pre-activation WRN-20-4 (3 stages of 3 blocks, 64/128/256
    # filters: 4.33 M parameters, ~0.5 G multiply-adds per image), shifts and flips, label
    # smoothing, the shared cosine decay over 40 epochs, batch 256 to fill a GPU. Its accuracy is
    # not measured on this CPU-only machine (a test only builds it and trains a few steps).
    "gpu": {"model": "resnet", "resnet.width": 64, "resnet.blocks_per_stage": 3, "augment": True,
            "label_smoothing": 0.1, "epochs": 40, "batch_size": 256, "early_stopping_patience": 10},
}


def _coerce(field: dataclasses.Field, raw: Any, name: str = "") -> Any:
    """`raw` as the field's type: `--set` gives strings, YAML and presets typed values."""
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if not isinstance(raw, str):
        if kind.startswith("tuple[int"):
            return tuple(int(a) for a in raw)
        return tuple(raw) if kind.startswith("tuple") else raw
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if kind.startswith("tuple[int"):
            return tuple(int(a) for a in raw.replace(",", " ").split())
        if kind.startswith("tuple"):
            return tuple(a for a in raw.split(" ") if a)
    except ValueError:
        raise ConfigError(f"config field '{name or field.name}' expects {kind}, got {raw!r}") from None
    return raw


def load_config(preset: str = "default", file: str | None = None,
                overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
    """Preset, then YAML file, then overrides; unknown keys are an error naming the key."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of {sorted(PRESETS)}")
    values: dict[str, Any] = dict(PRESETS[preset])
    if file:
        import yaml
        with open(file) as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping of config fields")
        values.update(loaded)
    values.update(overrides or {})
    values = flatten_settings(values)   # YAML's `resnet: {width: 32}` = `resnet.width=32`
    own = {f.name: f for f in dataclasses.fields(PipelineConfig) if f.name != "training"}
    training = {k: f for k, f in training_settings().items() if "." in k or not dataclasses.is_dataclass(f.default)}
    unknown = sorted(set(values) - set(own) - set(training))
    if unknown:
        raise ConfigError(unknown_message(unknown, [*own, *training]))
    return PipelineConfig(
        **{k: _coerce(own[k], v) for k, v in values.items() if k in own},
        training=TrainingConfig().with_settings(
            {k: _coerce(training[k], v, k) for k, v in values.items() if k in training}),
    ).validate()
