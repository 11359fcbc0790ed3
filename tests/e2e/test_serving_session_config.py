"""TF Serving's session thread flags (model_servers/main.cc, server.cc) and the NumPy fast paths
between TensorProtos and arrays, checked against TensorFlow's own conversions."""
import argparse

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2

import tfs_models
from serving import tensors
from serving.cli import add_serve_arguments, session_config_from_args
from serving.config import ConfigError
from serving.model_manager import ModelConfig
from serving.server import ModelServer


def _args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(flags))


def test_session_thread_flags_as_server_cc(tmp_path):
    """server.cc: no flag = TensorFlow's defaults; --tensorflow_session_parallelism sets both
    pools; the intra/inter flags win over it; all three at once is refused with its text; a
    --tensorflow_session_config_file is read (text-format ConfigProto) and the flags override it."""
    assert session_config_from_args(_args()) is None
    both = session_config_from_args(_args("--tensorflow_session_parallelism=3"))
    assert (both.intra_op_parallelism_threads, both.inter_op_parallelism_threads) == (3, 3)
    split = session_config_from_args(_args("--tensorflow_session_parallelism=3",
                                           "--tensorflow_intra_op_parallelism=1"))
    assert (split.intra_op_parallelism_threads, split.inter_op_parallelism_threads) == (1, 0)
    # tensorflow/serving model_servers/server.cc (BuildAndStart, at 9d981c5): the intra/inter pair is
    # written to the session config only when either is > 0, so -1 goes through beside intra-op 1
    # and is dropped alone.
    caller = session_config_from_args(_args("--tensorflow_intra_op_parallelism=1",
                                            "--tensorflow_inter_op_parallelism=-1"))
    assert (caller.intra_op_parallelism_threads, caller.inter_op_parallelism_threads) == (1, -1)
    alone = session_config_from_args(_args("--tensorflow_inter_op_parallelism=-1"))  # neither > 0: not applied
    assert (alone.intra_op_parallelism_threads, alone.inter_op_parallelism_threads) == (0, 0)
    with pytest.raises(ConfigError, match="You cannot configure all"):
        session_config_from_args(_args("--tensorflow_session_parallelism=1", "--tensorflow_intra_op_parallelism=1",
                                       "--tensorflow_inter_op_parallelism=1"))
    path = tmp_path / "session.config"
    path.write_text("inter_op_parallelism_threads: -1\nallow_soft_placement: true\n")
    from_file = session_config_from_args(_args(f"--tensorflow_session_config_file={path}"))
    assert from_file.inter_op_parallelism_threads == -1 and from_file.allow_soft_placement
    overridden = session_config_from_args(_args(f"--tensorflow_session_config_file={path}",
                                                "--tensorflow_session_parallelism=2"))
    assert overridden.inter_op_parallelism_threads == 2 and overridden.allow_soft_placement
    path.write_text("no_such_field: 1\n")
    with pytest.raises(ConfigError, match="session.config: Error parsing text-format tensorflow.ConfigProto"):
        session_config_from_args(_args(f"--tensorflow_session_config_file={path}"))


def test_fmnist_serve_defaults_to_the_contracts_thread_flags_and_gives_way_to_any_thread_setting(tmp_path):
    """`fmnist serve` (pipeline/cli.py) serves as the manifests and the InfraValidator do, with
    schema/contract.py's thread flags (one intra-op thread, ops in the calling thread), but only
    when the command line sets no thread flag and no session config file; `python -m serving`
    keeps TF Serving's defaults."""
    from pipeline.cli import build_parser
    from schema.contract import SERVING_INTER_OP_THREADS, SERVING_INTRA_OP_THREADS, SERVING_THREAD_FLAGS

    parser = build_parser()

    def config(*flags: str):
        return session_config_from_args(parser.parse_args(["serve", *flags]))

    default = config()
    assert (default.intra_op_parallelism_threads, default.inter_op_parallelism_threads) == (
        SERVING_INTRA_OP_THREADS, SERVING_INTER_OP_THREADS)
    assert config(*SERVING_THREAD_FLAGS) == default  # the flags the manifests pass mean the same
    both = config("--tensorflow_session_parallelism=3")
    assert (both.intra_op_parallelism_threads, both.inter_op_parallelism_threads) == (3, 3)
    path = tmp_path / "session.config"
    path.write_text("intra_op_parallelism_threads: 2\ninter_op_parallelism_threads: -1\n")
    from_file = config(f"--tensorflow_session_config_file={path}")
    assert (from_file.intra_op_parallelism_threads, from_file.inter_op_parallelism_threads) == (2, -1)
    assert session_config_from_args(_args()) is None


def test_server_runs_the_model_with_ops_in_the_calling_thread(tmp_path):
    """A session config reaches the model's Session: with inter-op -1 (ops run in the calling
    gRPC thread: tensorflow/core/common_runtime/direct_session.cc sets run_in_caller_thread_ when
    inter_op_parallelism_threads < 0) and one intra-op thread, half_plus_two still answers 0.5 * x + 2."""
    tfs_models.half_plus_two_tf1(str(tmp_path / "half_plus_two" / "1"))
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=-1, intra_op_parallelism_threads=1)
    with ModelServer([ModelConfig("half_plus_two", str(tmp_path / "half_plus_two"))], port=0, rest_port=None,
                     session_config=config) as server:
        from serving.client import ServingClient
        client = ServingClient(server.target, model="half_plus_two", timeout=30)
        try:
            response = client.predict_raw({"x": np.array([[1.0], [2.0], [3.0]], np.float32)})
        finally:
            client.close()
        assert list(response.outputs["y"].float_val) == [2.5, 3.0, 3.5]
        loaded = server.manager.resolve("half_plus_two")
        assert loaded._session._config.inter_op_parallelism_threads == -1


@pytest.mark.parametrize("array", [
    np.arange(784, dtype=np.float32).reshape(1, 28, 28), np.arange(6, dtype=np.int64).reshape(3, 2),
    np.uint8([[0, 255]]), np.float64([[0.5, -1.25]]), np.array([b"a", b"", b"\xff"], dtype=object),
    np.array([b"ab", b"c"], dtype="S2")])
def test_request_tensor_is_what_make_tensor_proto_writes(array):
    """The client's request tensor is byte for byte tf.make_tensor_proto's, and reads back (the
    server's path) as tf.make_ndarray reads it."""
    proto = tensor_pb2.TensorProto()
    assert tensors.fill_request_proto(proto, array)
    assert proto.SerializeToString() == tf.make_tensor_proto(array).SerializeToString()
    back, expected = tensors.to_array(proto, 1 << 20), tf.make_ndarray(proto)
    assert back.dtype == expected.dtype and back.shape == expected.shape and (back == expected).all()


@pytest.mark.parametrize("array", [np.float32(3.0).reshape(()), np.float32([7.0]), np.float16([1.5]),
                                   np.array([True, False]), np.array(["text"]), np.array([], dtype=object),
                                   np.arange(4, dtype=">i4")])
def test_other_request_tensors_are_left_to_tensorflow(array):
    """What tf.make_tensor_proto writes in typed fields (one value, half, bool), str and
    non-native byte order are not taken by the fast path: the client falls back to TensorFlow."""
    proto = tensor_pb2.TensorProto()
    assert not tensors.fill_request_proto(proto, array)
    assert proto.ByteSize() == 0


def test_answer_tensors_read_as_make_ndarray_reads_them():
    """Typed *_val answers (what the server writes) decode to the arrays tf.make_ndarray gives."""
    response = predict_pb2.PredictResponse()
    for key, value in {"p": np.float32([[0.25, 0.75]]), "id": np.int64([1]),
                       "name": np.array([b"Dress"], dtype=object)}.items():
        tensors.fill_proto(response.outputs[key], value)
    for key, proto in response.outputs.items():
        got, want = tensors.to_array(proto, 1 << 20), tf.make_ndarray(proto)
        assert got.dtype == want.dtype and got.shape == want.shape and (got == want).all()
