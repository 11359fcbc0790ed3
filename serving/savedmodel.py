"""One SavedModel version, loaded the way TF Serving loads it: through its SignatureDefs.

TF Serving's session-based loader (`LoadSavedModel` with the `serve` tag set) restores the
MetaGraph into a Session and runs a signature by feeding and fetching the tensor names its
SignatureDef lists. Doing the same here serves TF1 graphs (placeholders, ParseExample front ends,
stateful signatures without inputs) and TF2 `tf.saved_model.save` exports alike, and leaves shape
and dtype checks to the graph, as TF Serving does. Each (signature, inputs, outputs) combination
gets one compiled Session callable, so a request costs one C++ call.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Any

import numpy as np

from serving import errors

log = logging.getLogger(__name__)

SERVE_TAG = "serve"
INIT_OP_SIGNATURE = "__saved_model_init_op"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One entry of a SignatureDef's inputs or outputs."""
    alias: str
    tensor_name: str
    dtype: int          # tensorflow.DataType enum
    shape: tuple[int, ...] | None  # None = unknown rank; -1 = unknown dimension


@dataclasses.dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    # SignatureDef.defaults: a value for an input alias a request may leave out (TF >= 2.13's
    # meta_graph.proto; tensorflow/cc/saved_model/util.cc GetInputValues feeds it in its place).
    defaults: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_proto(cls, name: str, proto: Any) -> "Signature":
        def specs(infos: Any) -> dict[str, TensorSpec]:
            out = {}
            for alias, info in infos.items():
                shape = None if info.tensor_shape.unknown_rank else tuple(d.size for d in info.tensor_shape.dim)
                out[alias] = TensorSpec(alias, info.name, info.dtype, shape)
            return out
        defaults = {}
        if proto.DESCRIPTOR.fields_by_name.get("defaults") is not None:
            from serving import tensors
            defaults = {alias: tensors.to_array(value, 2**62, alias) for alias, value in proto.defaults.items()}
        return cls(name, proto.method_name, specs(proto.inputs), specs(proto.outputs), defaults)


class LoadedVersion:
    """A restored MetaGraph in its own Session; thread-safe (Session.run is)."""

    def __init__(self, name: str, version: int, path: str, session_config: Any = None) -> None:
        import tensorflow as tf

        self.name, self.version, self.path = name, version, path
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=session_config)
        try:
            meta_graph = tf.compat.v1.saved_model.loader.load(self._session, [SERVE_TAG], path)
        except Exception:
            self._session.close()
            raise
        self.signature_defs = {k: v for k, v in meta_graph.signature_def.items() if k != INIT_OP_SIGNATURE}
        if not self.signature_defs:
            self._session.close()
            raise ValueError(f"{path}: the SavedModel has no SignatureDefs for tag '{SERVE_TAG}'")
        self.signatures = {k: Signature.from_proto(k, v) for k, v in self.signature_defs.items()}
        self._callables: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def run(self, signature: Signature, feeds: dict[str, np.ndarray], outputs: list[str]
            ) -> dict[str, np.ndarray]:
        """Feed the signature's input tensors, fetch the named outputs; errors as ServingError."""
        import tensorflow as tf

        feed_aliases = sorted(feeds)
        key = (signature.name, tuple(feed_aliases), tuple(outputs))
        fn = self._callables.get(key)
        if fn is None:
            fn = self._make_callable(signature, feed_aliases, outputs, key)
        try:
            values = fn(*(feeds[a] for a in feed_aliases))
        except tf.errors.OpError as e:
            raise errors.from_tf_error(e) from None
        except UnicodeDecodeError:  # TF's own message quoted undecodable request bytes
            raise errors.InvalidArgument(
                f"signature '{signature.name}': an input could not be parsed by the model "
                "(e.g. bytes that are not a serialized tf.Example)") from None
        except (TypeError, ValueError) as e:  # a feed NumPy cannot turn into the tensor type
            raise errors.InvalidArgument(f"signature '{signature.name}': {e}") from None
        return dict(zip(outputs, values))

    def _make_callable(self, signature: Signature, feed_aliases: list[str], outputs: list[str],
                       key: tuple) -> Any:
        from tensorflow.core.protobuf import config_pb2

        options = config_pb2.CallableOptions(
            feed=[signature.inputs[a].tensor_name for a in feed_aliases],
            fetch=[signature.outputs[a].tensor_name for a in outputs])
        with self._lock:
            fn = self._callables.get(key)
            if fn is None:
                import tensorflow as tf
                try:
                    # The public make_callable adds a Python-side shape check TF Serving does not
                    # have; the options form is the same C++ callable without it.
                    fn = self._session._make_callable_from_options(options)
                except tf.errors.OpError as e:
                    raise errors.from_tf_error(e) from None
                if len(self._callables) < 256:  # bounded: keys come from client-chosen subsets
                    self._callables[key] = fn
        return fn

    def close(self) -> None:
        with self._lock:
            self._callables.clear()
        self._session.close()


def warmup_file(path: str) -> str:
    return os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
