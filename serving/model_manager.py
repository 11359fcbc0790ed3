"""Which model versions are served, loaded and warmed before they are switched in.

Mirrors TensorFlow Serving's model lifecycle: versions are the directories under
`<base>/<model>/` named by a non-negative int64 in ASCII digits (leading zeros allowed, as in TF
Serving's own `00000123`; hidden staging directories and every other name are ignored); a version
policy picks the wanted ones (latest N, all, or specific); a wanted version is loaded and warmed
from its `assets.extra/tf_serving_warmup_requests` *before* it becomes AVAILABLE; only then are
versions that are no longer wanted unloaded. A version that fails to load is never served: it is
reported END with its error in GetModelStatus, and the policy falls back to the next older
loadable version.

Beyond TF Serving (configurable): a new version that lacks a signature the served version has is
not switched in -- the served one stays, and the refusal is the new version's status -- because
every client of that signature would otherwise start failing.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from typing import Any, Callable

from tensorflow_serving.apis import get_model_status_pb2

from serving.errors import Error, InvalidArgument, NotFound, ServingError
from serving.metrics import NO_METRICS, OK, Metrics
from serving.request_log import LoggingConfig
from serving.savedmodel import LoadedVersion
from serving.versions import list_versions

__all__ = ["AVAILABLE", "END", "LOADING", "START", "UNLOADING", "ModelConfig", "ModelManager", "State",
           "VersionPolicy", "list_versions", "models_from_base"]

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# A version's state, as GetModelStatus reports it (tensorflow.serving.ModelVersionStatus.State).
State = get_model_status_pb2.ModelVersionStatus.State
START, LOADING, AVAILABLE, UNLOADING, END = State.START, State.LOADING, State.AVAILABLE, State.UNLOADING, State.END
UNLOAD_GRACE_SECONDS = 5.0  # an unloaded version's session closes once in-flight calls are done


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
    logging: LoggingConfig | None = None   # logging_config: sampled request logging


@dataclasses.dataclass
class VersionStatus:
    state: int
    error: str = ""


class ModelManager:
    """Keeps the served versions of each model in step with the file system, without a gap."""

    def __init__(self, models: list[ModelConfig], poll_seconds: float = 2.0,
                 warm_up: Callable[[LoadedVersion], int] | None = None,
                 keep_served_signatures: bool = True, session_config: Any = None,
                 metrics: Metrics = NO_METRICS) -> None:
        _check_names(models)
        self.metrics = metrics
        self.models = {m.name: m for m in models}
        self.poll_seconds = poll_seconds
        self.keep_served_signatures = keep_served_signatures
        self._warm_up = warm_up or (lambda _model: 0)
        self._session_config = session_config
        self._served: dict[str, dict[int, LoadedVersion]] = {m.name: {} for m in models}
        self._status: dict[str, dict[int, VersionStatus]] = {m.name: {} for m in models}
        self._failed: dict[tuple[str, int], float] = {}  # (model, version) -> dir mtime at failure
        self._lock = threading.Lock()        # guards the maps above
        self._sync_lock = threading.Lock()   # one sync at a time (poller, reload)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.poll_once()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        with self._lock:
            served = [m for versions in self._served.values() for m in versions.values()]
        for model in served:
            model.close()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # a poll must never kill the poller
                log.exception("polling the model directories failed")

    def poll_once(self) -> None:
        with self._sync_lock:
            for config in list(self.models.values()):
                try:
                    self._sync(config)
                except Exception:  # one model's trouble must not stop the others
                    log.exception("model %s: syncing with %s failed", config.name, config.base_path)

    def reload(self, models: list[ModelConfig]) -> None:
        """Switch to a new model list (HandleReloadConfigRequest, config-file polling).

        New models and versions are loaded before this returns; models no longer listed are
        unloaded. Moving a version label (promote, roll back) never leaves a gap: first the new
        policy's versions are loaded while every label still points where it did (and its version
        stays loaded), then the labels move -- each only to a version that is AVAILABLE, as in TF
        Serving -- and only then are versions no longer wanted unloaded. A label naming a version
        that could not be loaded fails the reload and the previous config stays in force.
        """
        _check_names(models)
        with self._sync_lock:
            with self._lock:
                old = dict(self.models)
                staged = {m.name: dataclasses.replace(m, labels=old[m.name].labels) if m.name in old else m
                          for m in models}
                self.models = {**old, **staged}
                for m in models:
                    self._served.setdefault(m.name, {})
                    self._status.setdefault(m.name, {})
            for config in staged.values():
                self._sync(config, pinned={v for _, v in config.labels})
            with self._lock:
                unavailable = [f"model {m.name!r}: label {label!r} -> version {v}"
                               for m in models for label, v in m.labels
                               if v not in self._served.get(m.name, {})
                               and m.name in old and (label, v) not in old[m.name].labels]
                if not unavailable:
                    self.models = {m.name: m for m in models}
            if unavailable:
                with self._lock:
                    self.models = old
                for config in old.values():
                    self._sync(config)
                raise ValueError("version label(s) name versions that are not available for inference, "
                                 "config not applied: " + "; ".join(unavailable))
            with self._lock:
                removed = [n for n in old if n not in self.models]
                gone = {n: self._served.pop(n, {}) for n in removed}
                for n in removed:
                    self._status.pop(n, None)
            for name, versions in gone.items():
                for model in versions.values():
                    log.info("model %s version %d unloaded (no longer configured)", name, model.version)
                    _close_later(model)
            for config in models:
                self._sync(config)

    def _sync(self, config: ModelConfig, pinned: set[int] = frozenset()) -> None:
        """Load the wanted versions, then unload the others except `pinned` ones (label targets
        during a reload)."""
        on_disk = list_versions(config.base_path)
        served = dict(self._served.get(config.name, {}))
        keep: dict[int, LoadedVersion] = {v: served[v] for v in pinned if v in served and v in on_disk}
        limit = config.policy.latest if config.policy.kind == "latest" else len(on_disk)
        newest_served = served[max(served)] if served else None
        wanted = 0
        for version in config.policy.wanted(list(on_disk)):
            if wanted >= limit:
                break
            if version in keep:
                wanted += 1
                continue
            if version in served:
                keep[version] = served[version]
                wanted += 1
                continue
            loaded = self._load(config.name, version, on_disk[version], newest_served)
            if loaded is not None:
                keep[version] = loaded
                wanted += 1
        # Versions served before but gone from disk or no longer wanted are unloaded only now,
        # after their replacements are AVAILABLE; a version whose directory vanished goes too.
        with self._lock:
            self._served[config.name] = keep
            status = self._status[config.name]
            for version, model in served.items():
                if version not in keep:
                    status[version] = VersionStatus(END)
                    log.info("model %s version %d unloaded", config.name, version)
                    _close_later(model)
            for version in keep:
                status[version] = VersionStatus(AVAILABLE)
            for version in list(status):  # forget versions whose directory is gone
                if version not in on_disk and version not in keep and status[version].state == END \
                        and len(status) > 64:
                    del status[version]

    def _load(self, name: str, version: int, path: str, served: LoadedVersion | None) -> LoadedVersion | None:
        mtime = _directory_stamp(path)
        if mtime is None:
            return None
        if self._failed.get((name, version)) == mtime:
            return None  # already failed in this form; retried only if the directory changes
        with self._lock:
            self._status[name][version] = VersionStatus(LOADING)
        started = time.monotonic()
        loaded = None
        try:
            try:
                loaded = LoadedVersion(name, version, path, self._session_config)
            finally:  # loader.cc's load_attempt_count / load_latency, by model_path
                self.metrics.load(path, loaded is not None, time.monotonic() - started)
            if served is not None and self.keep_served_signatures and version > served.version:
                missing = sorted(set(served.signatures) - set(loaded.signatures))
                if missing:
                    raise SignaturesMissing(
                        f"version {version} lacks signature(s) {missing} that the served version "
                        f"{served.version} has; version {served.version} stays served "
                        "(serve with --allow_version_signature_removal to switch anyway)")
            replayed = self._timed_warm_up(loaded)
        except Exception as e:  # any load failure: never serve it, keep what is served
            if loaded is not None:
                loaded.close()
            self._failed[(name, version)] = mtime
            message = str(e) if isinstance(e, SignaturesMissing) else f"{type(e).__name__}: {e}"
            with self._lock:
                self._status[name][version] = VersionStatus(END, message[:2000])
            log.error("model %s version %d at %s not loaded: %s", name, version, path, message[:500])
            return None
        self._failed.pop((name, version), None)
        log.info("model %s version %d loaded in %.1f s (%d warm-up records)", name, version,
                 time.monotonic() - started, replayed)
        return loaded

    def _timed_warm_up(self, loaded: LoadedVersion) -> int:
        """The warm-up, timed by status as saved_model_warmup_util.cc's model_warmup_latency."""
        started, status = time.monotonic(), OK
        try:
            return self._warm_up(loaded)
        except ServingError as e:
            status = e.code.name
            raise
        except Exception:
            status = "UNKNOWN"
            raise
        finally:
            self.metrics.warmup(loaded.path, status, time.monotonic() - started)

    # --- queries -------------------------------------------------------------------------------
    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> LoadedVersion:
        with self._lock:
            config = self.models.get(name)
            served = self._served.get(name, {})
        if config is None:
            spec = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise NotFound(f"Servable not found for request: {spec}")
        if label:
            labels = dict(config.labels)
            if label not in labels:
                raise InvalidArgument(f"Unrecognized servable version label: {label}")
            version = labels[label]
        if version is not None:
            if version not in served:
                raise NotFound(f"Servable not found for request: Specific({name}, {version})")
            return served[version]
        if not served:
            raise NotFound(f"Servable not found for request: Latest({name})")
        return served[max(served)]

    def status(self, name: str, version: int | None = None) -> dict[int, VersionStatus]:
        with self._lock:
            if name not in self.models:
                raise NotFound(f"Could not find any versions of model {name}")
            statuses = dict(self._status[name])
        if version is not None:
            if version not in statuses:
                raise NotFound(f"Could not find version {version} of model {name}")
            return {version: statuses[version]}
        return statuses

    def label_version(self, name: str, label: str) -> int:
        with self._lock:
            config = self.models.get(name)
        if config is None:
            raise NotFound(f"Could not find any versions of model {name}")
        labels = dict(config.labels)
        if label not in labels:
            raise InvalidArgument(f"Unrecognized servable version label: {label}")
        return labels[label]

    def available(self, name: str) -> list[int]:
        with self._lock:
            return sorted(self._served.get(name, {}))


class SignaturesMissing(Error):
    """A new version would drop a signature clients of the served version use."""


def _check_names(models: list[ModelConfig]) -> None:
    seen = set()
    for m in models:
        if not NAME_RE.match(m.name):
            raise ValueError(f"invalid model name {m.name!r}")
        if m.name in seen:
            raise ValueError(f"model {m.name!r} is configured twice")
        seen.add(m.name)


def _close_later(model: LoadedVersion) -> None:
    """Close an unloaded version's session after in-flight calls have had time to finish."""
    timer = threading.Timer(UNLOAD_GRACE_SECONDS, model.close)
    timer.daemon = True
    timer.start()


def _directory_stamp(path: str) -> int | None:
    """The version directory's modification time (a failed version is retried only once it changes);
    None when it is gone. Object stores (gs://) keep no directory times: 0 there."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(path):
        return None
    try:
        return tf.io.gfile.stat(path).mtime_nsec
    except tf.errors.OpError:
        return 0


def models_from_base(root: str) -> list[ModelConfig]:
    """Every `<root>/<model>/` directory as a model with the default (latest 1) policy."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(root):
        return []
    names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(root))
    return [ModelConfig(n, os.path.join(root, n)) for n in names
            if NAME_RE.match(n) and tf.io.gfile.isdir(os.path.join(root, n))]


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
        logging_config = None
        if entry.get("logging_config"):
            raw_log = entry["logging_config"]
            prefix = str(raw_log.get("filename_prefix", ""))
            if not prefix:
                raise ValueError(f"{path}: model {entry['name']!r}: logging_config needs a filename_prefix")
            if not os.path.isabs(prefix):
                prefix = os.path.join(os.path.dirname(os.path.abspath(path)), prefix)
            logging_config = LoggingConfig(prefix, float(raw_log.get("sampling_rate", 1.0)))
        models.append(ModelConfig(entry["name"], base, VersionPolicy.from_config(entry.get("version_policy")),
                                  labels, logging_config))
    if not models:
        raise ValueError(f"{path}: no models listed (expected a 'models:' list)")
    return models
