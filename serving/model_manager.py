"""Which model versions are served, loaded and warmed before they are switched in.

Mirrors TensorFlow Serving's model lifecycle: versions are the integer directories under
`<base>/<model>/` (hidden staging directories are ignored); a version policy picks the wanted
ones (latest N, all, or specific); a wanted version is loaded and every signature is run once
(warm-up) *before* it becomes AVAILABLE; only then are versions that are no longer wanted
unloaded. A version that fails to load is never served: it is reported END with its error in
GetModelStatus, and the policy falls back to the next older loadable version.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# tensorflow.serving.ModelVersionStatus.State values.
START, LOADING, AVAILABLE, UNLOADING, END = 10, 20, 30, 40, 50


class ModelNotFound(KeyError):
    """Unknown model, version, label or signature (gRPC NOT_FOUND)."""


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    kind: str = "latest"              # latest | all | specific
    latest: int = 1
    specific: tuple[int, ...] = ()

    def wanted(self, versions: list[int]) -> list[int]:
        """Versions to try, best first (newest first for latest/all)."""
        ordered = sorted(versions, reverse=True)
        if self.kind == "specific":
            return [v for v in ordered if v in self.specific]
        return ordered

    @classmethod
    def from_config(cls, raw: dict | None) -> "VersionPolicy":
        if not raw:
            return cls()
        if "latest" in raw:
            return cls("latest", latest=int((raw["latest"] or {}).get("num_versions", 1))
                       if isinstance(raw["latest"], dict) else int(raw["latest"]))
        if "all" in raw:
            return cls("all")
        if "specific" in raw:
            versions = raw["specific"]
            versions = versions.get("versions", []) if isinstance(versions, dict) else versions
            return cls("specific", specific=tuple(int(v) for v in versions))
        raise ValueError(f"unknown version_policy {raw!r}; use latest, all or specific")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: tuple[tuple[str, int], ...] = ()


@dataclasses.dataclass
class VersionStatus:
    state: int
    error: str = ""


class LoadedVersion:
    """One loaded SavedModel version and its signatures."""

    def __init__(self, name: str, version: int, path: str) -> None:
        import tensorflow as tf

        self.name, self.version, self.path = name, version, path
        self.module = tf.saved_model.load(path)
        self.signatures: dict[str, Any] = dict(self.module.signatures)
        if not self.signatures:
            raise ValueError(f"{path}: the SavedModel has no signatures")
        self.inputs = {name: fn.structured_input_signature[1] for name, fn in self.signatures.items()}
        self.outputs = {name: fn.structured_outputs for name, fn in self.signatures.items()}
        self.signature_defs = _read_signature_defs(path)

    def warm_up(self) -> None:
        """Run every signature once on a one-row dummy input, so no client pays the tracing cost."""
        import tensorflow as tf

        for name, fn in self.signatures.items():
            feeds = {}
            for key, spec in self.inputs[name].items():
                shape = [1 if d is None else d for d in spec.shape.as_list()]
                if spec.dtype == tf.string:
                    feeds[key] = tf.constant(_dummy_example(), shape=shape)
                else:
                    feeds[key] = tf.zeros(shape, spec.dtype)
            try:
                fn(**feeds)
            except tf.errors.InvalidArgumentError:
                if not any(spec.dtype == tf.string for spec in self.inputs[name].values()):
                    raise  # a string signature may need real features; others must run


def _dummy_example() -> bytes:
    """A tf.Example with every pixel feature this project's signatures parse, all zero."""
    import tensorflow as tf

    from pipeline.features import PIXEL_KEYS, RAW_PIXELS_KEY

    feats = {k: tf.train.Feature(int64_list=tf.train.Int64List(value=[0])) for k in PIXEL_KEYS}
    feats[RAW_PIXELS_KEY] = tf.train.Feature(int64_list=tf.train.Int64List(value=[0] * len(PIXEL_KEYS)))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def _read_signature_defs(path: str) -> dict[str, Any]:
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    defs = dict(sm.meta_graphs[0].signature_def)
    defs.pop("__saved_model_init_op", None)
    return defs


def list_versions(base_path: str) -> dict[int, str]:
    """{version: dir} for integer directories; hidden and other names (staging) are skipped."""
    try:
        names = os.listdir(base_path)
    except FileNotFoundError:
        return {}
    return {int(n): os.path.join(base_path, n) for n in names
            if n.isdigit() and os.path.isdir(os.path.join(base_path, n))}


class ModelManager:
    """Keeps the served versions of each model in step with the file system, without a gap."""

    def __init__(self, models: list[ModelConfig], poll_seconds: float = 2.0) -> None:
        for m in models:
            if not NAME_RE.match(m.name):
                raise ValueError(f"invalid model name {m.name!r}")
        self.models = {m.name: m for m in models}
        self.poll_seconds = poll_seconds
        self._served: dict[str, dict[int, LoadedVersion]] = {m.name: {} for m in models}
        self._status: dict[str, dict[int, VersionStatus]] = {m.name: {} for m in models}
        self._failed: dict[tuple[str, int], float] = {}  # (model, version) -> dir mtime at failure
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.poll_once()
        self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # a poll must never kill the poller
                log.exception("polling the model directories failed")

    def poll_once(self) -> None:
        for config in self.models.values():
            self._sync(config)

    def _sync(self, config: ModelConfig) -> None:
        on_disk = list_versions(config.base_path)
        served = dict(self._served[config.name])
        keep: dict[int, LoadedVersion] = {}
        limit = config.policy.latest if config.policy.kind == "latest" else len(on_disk)
        for version in config.policy.wanted(list(on_disk)):
            if len(keep) >= limit:
                break
            if version in served:
                keep[version] = served[version]
                continue
            loaded = self._load(config.name, version, on_disk[version])
            if loaded is not None:
                keep[version] = loaded
        # Versions served before but gone from disk or no longer wanted are unloaded only now,
        # after their replacements are AVAILABLE; a version whose directory vanished goes too.
        with self._lock:
            self._served[config.name] = keep
            for version in served:
                if version not in keep:
                    self._status[config.name][version] = VersionStatus(END)
                    log.info("model %s version %d unloaded", config.name, version)
            for version in keep:
                self._status[config.name][version] = VersionStatus(AVAILABLE)

    def _load(self, name: str, version: int, path: str) -> LoadedVersion | None:
        try:
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:
            return None
        if self._failed.get((name, version)) == mtime:
            return None  # already failed in this form; retried only if the directory changes
        with self._lock:
            self._status[name][version] = VersionStatus(LOADING)
        started = time.monotonic()
        try:
            loaded = LoadedVersion(name, version, path)
            loaded.warm_up()
        except Exception as e:  # any load failure: never serve it, keep what is served
            self._failed[(name, version)] = mtime
            with self._lock:
                self._status[name][version] = VersionStatus(END, f"{type(e).__name__}: {e}"[:2000])
            log.error("model %s version %d at %s failed to load: %s", name, version, path, e)
            return None
        self._failed.pop((name, version), None)
        log.info("model %s version %d loaded and warmed in %.1f s", name, version,
                 time.monotonic() - started)
        return loaded

    # --- queries -------------------------------------------------------------------------------
    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        if name not in self.models:
            raise ModelNotFound(f"Servable not found for request: model '{name}' is not served")
        served = self._served[name]
        if label:
            labels = dict(self.models[name].labels)
            if label not in labels:
                raise ModelNotFound(f"Unrecognized servable version label: {label}")
            version = labels[label]
        if version is not None:
            if version not in served:
                raise ModelNotFound(f"Servable not found for request: Specific({name}, {version})")
            return served[version]
        if not served:
            raise ModelNotFound(f"Servable not found for request: Latest({name}): no version available")
        return served[max(served)]

    def status(self, name: str, version: int | None = None) -> dict[int, VersionStatus]:
        if name not in self.models:
            raise ModelNotFound(f"Could not find any versions of model {name}")
        with self._lock:
            statuses = dict(self._status[name])
        if version is not None:
            if version not in statuses:
                raise ModelNotFound(f"Could not find version {version} of model {name}")
            return {version: statuses[version]}
        return statuses

    def available(self, name: str) -> list[int]:
        return sorted(self._served.get(name, {}))


def models_from_base(root: str) -> list[ModelConfig]:
    """Every `<root>/<model>/` directory as a model with the default (latest 1) policy."""
    names = sorted(n for n in os.listdir(root) if NAME_RE.match(n) and os.path.isdir(os.path.join(root, n)))
    return [ModelConfig(n, os.path.join(root, n)) for n in names]


def models_from_file(path: str) -> list[ModelConfig]:
    """YAML/JSON: {models: [{name, base_path, version_policy: {...}, version_labels: {label: v}}]}."""
    import yaml

    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    models = []
    for entry in raw.get("models", []):
        base = entry["base_path"]
        if not os.path.isabs(base):
            base = os.path.join(os.path.dirname(os.path.abspath(path)), base)
        labels = tuple((str(k), int(v)) for k, v in (entry.get("version_labels") or {}).items())
        models.append(ModelConfig(entry["name"], base, VersionPolicy.from_config(entry.get("version_policy")),
                                  labels))
    if not models:
        raise ValueError(f"{path}: no models listed (expected a 'models:' list)")
    return models


def as_batch(array: np.ndarray) -> np.ndarray:
    return array if array.ndim else array.reshape(1)
