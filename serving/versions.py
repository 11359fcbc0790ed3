"""Which directories under a model's base path are versions: TF Serving's rule, in one place.

A version is a directory `<base>/<N>/` whose name is a non-negative int64 in ASCII digits (leading
zeros allowed, as in TF Serving's own `00000123`); hidden directories (a pusher's `.staging-*`) and
every other name are ignored. `str.isdigit()` is not the rule: it also accepts '①' and other
Unicode digits that `int()` or TF Serving would not take.

Listed with tf.io.gfile, so the server, the pipeline's pusher and its baseline step read local
directories and the gs:// / s3:// ones a pipeline pushes to alike. Generic: nothing of the project.
"""
from __future__ import annotations

import logging
import os
import re

log = logging.getLogger(__name__)

VERSION_RE = re.compile(r"[0-9]{1,19}")   # ASCII digits only
MAX_VERSION = 2**63 - 1                   # versions are int64 in TF Serving's protos

_warned: set[tuple[str, str]] = set()


def _warn_once(base: str, key: str, message: str) -> None:
    """A poll runs every second or so; say each odd name once, not every time."""
    if (base, key) not in _warned and len(_warned) < 10_000:
        _warned.add((base, key))
        log.warning(message)


def list_versions(base_path: str) -> dict[int, str]:
    """{version: dir} for the directories TF Serving would take as versions.

    Names that are not ASCII digits, over int64, or that name the same number as another
    directory (`0123` and `123`) are skipped with a warning; a listing never fails on a name,
    and a missing base path has no versions.
    """
    import tensorflow as tf

    try:
        names = [name.rstrip("/") for name in tf.io.gfile.listdir(base_path)]
    except (tf.errors.NotFoundError, tf.errors.FailedPreconditionError, NotADirectoryError, FileNotFoundError):
        return {}
    found: dict[int, list[str]] = {}
    for name in names:
        if name.startswith(".") or not VERSION_RE.fullmatch(name):
            continue
        number = int(name)
        if number > MAX_VERSION:
            _warn_once(base_path, name, f"{base_path}/{name}: version over 2**63-1 (int64), ignored")
            continue
        path = os.path.join(base_path, name)
        if tf.io.gfile.isdir(path):
            found.setdefault(number, []).append(name)
    versions = {}
    for number, dirs in found.items():
        if len(dirs) > 1:
            _warn_once(base_path, ",".join(sorted(dirs)),
                       f"{base_path}: directories {sorted(dirs)} all name version {number}; none is served")
            continue
        versions[number] = os.path.join(base_path, dirs[0])
    return versions
