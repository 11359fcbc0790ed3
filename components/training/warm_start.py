"""Warm start: a new span's model begins from the weights of the model served now.

The Trainer's `base_model` input is ServedModelBaseline's artifact (components/baseline.py): the
newest complete version in the serving directory, i.e. the latest model that was blessed by the
Evaluator and the InfraValidator and pushed. It is empty before the first push.

Architecture match is decided on the weights themselves: the served SavedModel's variables
checkpoint is keyed by the Keras model's object graph (`layer_with_weights-<i>/<attribute>`, as
tf_keras' Functional._layer_checkpoint_dependencies names them), so the fresh model matches when
it has exactly the same keys with the same shapes. Anything else -- a changed filter count, an
extra block, a model from before a code change -- is a cold start, with the reason logged.

Only the layers' weights are restored; the optimizer starts afresh (its step counter drives the
cosine learning-rate schedule of the new, shorter run).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import tensorflow as tf

log = logging.getLogger(__name__)

WARM_START_FILE = "warm_start.json"
_LAYER_PREFIX = "layer_with_weights-"


@dataclasses.dataclass
class WarmStart:
    warm: bool
    reason: str
    base_model: str | None = None
    epochs: int | None = None
    variables: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def weighted_layers(model: Any) -> dict[str, Any]:
    """{'layer_with_weights-<i>': layer}, numbered as tf_keras numbers them in checkpoints."""
    layers = [layer for layer in model.layers if layer.weights]
    return {f"{_LAYER_PREFIX}{i}": layer for i, layer in enumerate(layers)}


def _variables_prefix(saved_model_dir: str) -> str:
    return os.path.join(saved_model_dir, "variables", "variables")


def _layer_variables(shapes: dict[str, list[int]]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in shapes.items()
            if k.startswith(_LAYER_PREFIX) and k.endswith("/.ATTRIBUTES/VARIABLE_VALUE")}


def model_variable_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """The checkpoint keys and shapes of `model`'s layer weights, from a scratch checkpoint of
    them -- so the naming is TensorFlow's own, exactly as in the served model's variables."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        prefix = tf.train.Checkpoint(**weighted_layers(model)).write(os.path.join(scratch, "ckpt"))
        return _layer_variables(dict(tf.train.list_variables(prefix)))


def check(model: Any, base_model: str | None) -> WarmStart:
    """Whether `model` can start from the SavedModel in `base_model` (and why not)."""
    if not base_model or not tf.io.gfile.exists(_variables_prefix(base_model) + ".index"):
        return WarmStart(False, "no served model yet (first run): cold start", base_model)
    served = _layer_variables(dict(tf.train.list_variables(_variables_prefix(base_model))))
    fresh = model_variable_shapes(model)
    if served != fresh:
        missing = sorted(set(fresh) - set(served))
        extra = sorted(set(served) - set(fresh))
        changed = sorted(k for k in set(fresh) & set(served) if fresh[k] != served[k])
        detail = (f"{changed[0].split('/.')[0]} is {served[changed[0]]} served vs {fresh[changed[0]]} now"
                  if changed else f"{len(missing)} weights only in the new model, {len(extra)} only in the served one")
        return WarmStart(False, f"architecture differs from the served model ({detail}): cold start", base_model)
    return WarmStart(True, "architecture matches the served model: warm start", base_model, variables=len(fresh))


def restore(model: Any, base_model: str) -> None:
    """Load the served model's layer weights into `model` (the optimizer is left fresh)."""
    checkpoint = tf.train.Checkpoint(**weighted_layers(model))
    status = checkpoint.read(_variables_prefix(base_model))
    status.expect_partial()                 # the served model also holds tft_layer, optimizer, metrics
    status.assert_existing_objects_matched()  # but every weight of the new model must come from it


def write_record(result: WarmStart, model_run_dir: str) -> None:
    """warm_start.json in the Trainer's ModelRun artifact (read by the run summary and report)."""
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, WARM_START_FILE), "w") as f:
        json.dump(result.to_json(), f, indent=1)


def read_record(model_run_dir: str) -> dict[str, Any] | None:
    path = os.path.join(model_run_dir, WARM_START_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)
