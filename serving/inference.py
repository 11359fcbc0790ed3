"""Checks a request's inputs against a signature and runs it; shared by gRPC and REST.

Everything a client can get wrong is caught here and turned into the status TF Serving clients
expect (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED) before any tensor reaches the model, so
a bad request never disturbs the server.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from serving.batching import Batchers
from serving.model_manager import LoadedVersion, ModelNotFound

DEFAULT_SIGNATURE = "serving_default"
MAX_ROWS = 10_000


class InvalidArgument(ValueError):
    """The request does not fit the signature (gRPC INVALID_ARGUMENT)."""


class ResourceExhausted(ValueError):
    """The request is over a size limit (gRPC RESOURCE_EXHAUSTED)."""


def signature(model: LoadedVersion, name: str) -> tuple[str, Any]:
    name = name or DEFAULT_SIGNATURE
    if name not in model.signatures:
        raise ModelNotFound(f"Serving signature name: \"{name}\" not found in signature def; "
                            f"available: {sorted(model.signatures)}")
    return name, model.signatures[name]


def check_inputs(model: LoadedVersion, sig_name: str, feeds: dict[str, np.ndarray],
                 max_rows: int = MAX_ROWS) -> dict[str, np.ndarray]:
    """Same keys, dtypes and compatible shapes as the signature; finite floats; bounded rows."""
    import tensorflow as tf

    specs = model.inputs[sig_name]
    missing = sorted(set(specs) - set(feeds))
    unknown = sorted(set(feeds) - set(specs))
    if missing or unknown:
        raise InvalidArgument(f"signature '{sig_name}' expects inputs {sorted(specs)}; "
                              f"missing {missing}, unexpected {unknown}")
    checked = {}
    for key, spec in specs.items():
        array = feeds[key]
        want = spec.dtype
        if want == tf.string:
            if array.dtype.kind not in "OSU":
                raise InvalidArgument(f"input '{key}' must be DT_STRING, got {array.dtype}")
        elif tf.as_dtype(array.dtype) != want:
            raise InvalidArgument(f"input '{key}' must be {want.name}, got {tf.as_dtype(array.dtype).name}")
        if not spec.shape.is_compatible_with(array.shape):
            raise InvalidArgument(f"input '{key}' must have shape {spec.shape.as_list()} "
                                  f"(None = any), got {list(array.shape)}")
        if array.ndim and array.shape[0] > max_rows:
            raise ResourceExhausted(f"input '{key}' has {array.shape[0]} rows; the limit is {max_rows}")
        if array.ndim and array.shape[0] == 0:
            raise InvalidArgument(f"input '{key}' is empty")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidArgument(f"input '{key}' contains NaN or infinity")
        checked[key] = array
    return checked


def run(model: LoadedVersion, sig_name: str, feeds: dict[str, np.ndarray], batchers: Batchers
        ) -> dict[str, np.ndarray]:
    import tensorflow as tf

    fn = model.signatures[sig_name]

    def call(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            out = fn(**{k: tf.constant(v) for k, v in batch.items()})
        except tf.errors.InvalidArgumentError as e:  # e.g. an Example missing a feature
            raise InvalidArgument(e.message.split("\n")[0]) from None
        except UnicodeDecodeError:  # TF's own message quoted undecodable request bytes
            raise InvalidArgument(f"signature '{sig_name}': an input could not be parsed "
                                  "(not a serialized tf.Example?)") from None
        return {k: v.numpy() for k, v in out.items()}

    return batchers.run((model.name, model.version, sig_name), call, feeds)
