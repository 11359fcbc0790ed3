"""A Pusher executor whose new model version appears in the serving directory all at once.

Why: the stock Pusher copies straight into `<base>/<version>/` (saved_model.pb last), so a model
server polling the base directory -- or a push killed half-way -- can see a half-written version.
Here the copy goes to a hidden sibling directory, is checked to load as a SavedModel with the
expected signatures, and is then renamed into place: one atomic rename on a local or POSIX file
system. Versions also strictly increase, even for two pushes in the same second.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any

from tfx import types
from tfx.components.pusher import executor as stock
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from schema.contract import PREDICT_SIGNATURE
from serving.versions import list_versions

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"


def existing_versions(base: str) -> list[int]:
    """Version directories under `base` by TF Serving's rule (serving/versions.py; staging
    directories are hidden, so skipped)."""
    return sorted(list_versions(base))


def next_version(base: str, now: float | None = None) -> int:
    """The Unix time, or one more than the newest version if that is not newer."""
    stamp = int(time.time() if now is None else now)
    versions = existing_versions(base)
    return max(stamp, versions[-1] + 1) if versions else stamp


def check_loadable(path: str) -> None:
    """Raise unless `path` loads as a SavedModel with a serving_default signature."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    if PREDICT_SIGNATURE not in loaded.signatures:
        raise RuntimeError(f"{path}: SavedModel has no serving_default signature "
                           f"(has {sorted(loaded.signatures)})")


def push_atomically(model_path: str, base: str, version: int | None = None) -> str:
    """Copy `model_path` to `<base>/<version>/` so readers see nothing or the whole model."""
    fileio.makedirs(base)
    version = next_version(base) if version is None else version
    final = os.path.join(base, str(version))
    staging = os.path.join(base, f"{STAGING_PREFIX}{version}-{os.getpid()}")
    if fileio.exists(staging):
        fileio.rmtree(staging)
    try:
        io_utils.copy_dir(model_path, staging)
        check_loadable(staging)
        fileio.rename(staging, final, overwrite=False)
    except BaseException:
        if fileio.exists(staging):
            shutil.rmtree(staging, ignore_errors=True) if os.path.isdir(staging) else fileio.rmtree(staging)
        raise
    return final


class Executor(stock.Executor):
    """Stock Pusher semantics (blessing check, ModelPushPath artifact) with an atomic push."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            log.warning("model not blessed by the Evaluator: nothing pushed")
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                                  destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("only a filesystem push destination is supported")
        serving_path = push_atomically(model_path, destination.filesystem.base_directory)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path,
                         pushed_version=os.path.basename(serving_path))
        log.info("model pushed to %s", serving_path)
