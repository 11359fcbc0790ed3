"""Promote and roll back: move a version label in the server's model config file.

The file is TF Serving's text-format ModelServerConfig (`--model_config_file`). Clients that ask
for a label (`stable`, `canary`) instead of a version are moved by editing `version_labels` and
`model_version_policy` (`specific`: the labelled versions, plus the stable version a promotion
replaced, kept loaded so that a rollback is a label move, not a load), written atomically (temporary file +
rename, so a polling server never reads half a file). The running server picks the file up by its
config poll (`--model_config_file_poll_wait_seconds`) or at once by HandleReloadConfigRequest; it
loads a newly labelled version before moving the label, so no request fails during the move.

Every move is appended to `<config file>.history.jsonl`, which is what `rollback` undoes.

With a server address the file is written first and then the server is asked to reload it; if the
server refuses (e.g. the version does not load), the file is put back as it was, so the file and
the server never disagree for longer than that request (a polling server would otherwise turn a
config sent by request back into the file's older one).
"""
from __future__ import annotations

import datetime
import json
import os
import tempfile
from typing import Any, Callable

from google.protobuf import text_format

from components.errors import FmnistError

LABELS = ("stable", "canary")


class LabelError(FmnistError, ValueError):
    """A promote/rollback that cannot be done; the message names the file, model or version."""


def history_path(config_path: str) -> str:
    return config_path + ".history.jsonl"


def read_config(path: str) -> Any:
    from serving.config import ConfigError, read_model_server_config

    try:
        return read_model_server_config(path)
    except ConfigError as e:
        raise LabelError(str(e)) from None


def new_config(model: str, base_path: str) -> Any:
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(name=model, base_path=os.path.abspath(base_path))
    entry.model_platform = "tensorflow"
    return config


def find_model(config: Any, model: str | None, path: str) -> Any:
    entries = list(config.model_config_list.config)
    if model is None:
        if len(entries) != 1:
            raise LabelError(f"{path}: {len(entries)} models configured; say which with --model")
        return entries[0]
    for entry in entries:
        if entry.name == model:
            return entry
    raise LabelError(f"{path}: no model {model!r} (configured: {[e.name for e in entries]})")


def _base_path(entry: Any, config_path: str) -> str:
    base = entry.base_path
    if not os.path.isabs(base) and "://" not in base:
        base = os.path.join(os.path.dirname(os.path.abspath(config_path)), base)
    return base


def _check_version(entry: Any, version: int, config_path: str) -> None:
    from serving.versions import list_versions

    base = _base_path(entry, config_path)
    if version not in list_versions(base):
        raise LabelError(f"model {entry.name!r}: no version {version} under {base} "
                         f"(versions there: {sorted(list_versions(base))})")


def set_label(entry: Any, label: str, version: int, standby: int | None = None) -> int | None:
    """Point `label` at `version` and serve the labelled versions plus `standby` (the stable
    version just replaced, kept loaded so a rollback needs no load). The previous target."""
    previous = entry.version_labels[label] if label in entry.version_labels else None
    entry.version_labels[label] = version
    if label == "stable" and entry.version_labels.get("canary") == version:
        del entry.version_labels["canary"]  # the canary became stable
    versions = set(entry.version_labels.values()) | ({standby} if standby is not None else set())
    entry.model_version_policy.specific.versions[:] = sorted(versions)
    return previous


def write_config(config: Any, path: str) -> None:
    _atomic_write(path, text_format.MessageToString(config))


def _atomic_write(path: str, text: str) -> None:
    """Temporary file + rename: a polling server reads the old or the new file, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model-config-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _write_and_reload(config: Any, path: str, reload: Callable[[Any], None] | None) -> None:
    try:
        with open(path) as f:
            before: str | None = f.read()
    except FileNotFoundError:
        before = None
    write_config(config, path)
    if reload is None:
        return
    try:
        reload(config)
    except BaseException:
        if before is None:
            os.remove(path)
        else:
            _atomic_write(path, before)
        raise


def _append_history(config_path: str, record: dict) -> None:
    record = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **record}
    with open(history_path(config_path), "a") as f:
        f.write(json.dumps(record) + "\n")


def _history(config_path: str) -> list[dict]:
    try:
        with open(history_path(config_path)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def promote(config_path: str, version: int, label: str, model: str | None = None,
            base_path: str | None = None, reload: Callable[[Any], None] | None = None
            ) -> tuple[Any, int | None]:
    """Label `version`; creates the config file (with --base-path) when there is none yet.

    `reload(config)` runs after the file is written (the server's reload); if it raises, the file
    is restored and nothing is recorded."""
    if label not in LABELS:
        raise LabelError(f"label {label!r}: use one of {LABELS}")
    if os.path.exists(config_path):
        config = read_config(config_path)
    elif base_path and model:
        config = new_config(model, base_path)
    else:
        raise LabelError(f"{config_path}: no such model config file (give --base-path and --model to create it)")
    entry = find_model(config, model, config_path)
    _check_version(entry, version, config_path)
    current = entry.version_labels[label] if label in entry.version_labels else None
    previous = set_label(entry, label, version, standby=current if label == "stable" else None)
    _write_and_reload(config, config_path, reload)
    _append_history(config_path, {"action": "promote", "model": entry.name, "label": label,
                                  "from": previous, "to": version})
    return config, previous


def rollback_target(config_path: str, model: str, label: str, current: int) -> int:
    """The version `label` pointed at before its latest promotion not yet rolled back."""
    undone = 0
    for record in reversed(_history(config_path)):
        if record.get("model") != model or record.get("label") != label:
            continue
        if record["action"] == "rollback":
            undone += 1
        elif record["action"] == "promote":
            if undone:
                undone -= 1
                continue
            if record.get("from") is None:
                break
            return int(record["from"])
    raise LabelError(f"{history_path(config_path)}: no earlier version of {model!r} labelled {label!r} "
                     f"to go back to (now {current})")


def rollback(config_path: str, label: str = "stable", model: str | None = None,
             reload: Callable[[Any], None] | None = None) -> tuple[Any, int, int]:
    """Point `label` back at the version it had before the last promotion; (config, from, to)."""
    config = read_config(config_path)
    entry = find_model(config, model, config_path)
    if label not in entry.version_labels:
        raise LabelError(f"{config_path}: model {entry.name!r} has no {label!r} label to roll back")
    current = entry.version_labels[label]
    target = rollback_target(config_path, entry.name, label, current)
    _check_version(entry, target, config_path)
    set_label(entry, label, target)
    _write_and_reload(config, config_path, reload)
    _append_history(config_path, {"action": "rollback", "model": entry.name, "label": label,
                                  "from": current, "to": target})
    return config, current, target


def absolute(config: Any, config_path: str) -> Any:
    """A copy with base paths and log prefixes absolute, as a server elsewhere must get them."""
    copy = type(config)()
    copy.CopyFrom(config)
    root = os.path.dirname(os.path.abspath(config_path))
    for entry in copy.model_config_list.config:
        if not os.path.isabs(entry.base_path) and "://" not in entry.base_path:
            entry.base_path = os.path.join(root, entry.base_path)
        prefix = entry.logging_config.log_collector_config.filename_prefix
        if prefix and not os.path.isabs(prefix) and "://" not in prefix:
            entry.logging_config.log_collector_config.filename_prefix = os.path.join(root, prefix)
    return copy


def reload_server(target: str, config: Any, config_path: str, timeout: float = 300.0) -> None:
    """HandleReloadConfigRequest: returns once the server serves the new config."""
    import grpc
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    request = model_management_pb2.ReloadConfigRequest()
    request.config.CopyFrom(absolute(config, config_path))
    with grpc.insecure_channel(target) as channel:
        try:
            response = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                request, timeout=timeout)
        except grpc.RpcError as e:
            raise LabelError(f"server {target}: reload failed: {e.code().name} {e.details()}") from None
    if response.status.error_code:
        raise LabelError(f"server {target}: reload failed: {response.status.error_message}")
