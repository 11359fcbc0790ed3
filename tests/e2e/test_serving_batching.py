"""Batching's queue limit on a real server (issue 30): a full queue answers UNAVAILABLE with TF
Serving's own text (shared_batch_scheduler.h ValidateBatchTaskQueueCapacity), no answer is
dropped or given to the wrong client, and the server keeps serving.

Servers: serving.server.ModelServer on 127.0.0.1 (gRPC), a real SavedModel (tfs_models.images_tf2),
every answer checked against the same SavedModel run in-process. Waits are bounded (wait_until)."""
import threading

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2

import tfs_client
import tfs_models
from conftest import wait_until
from serving import tensors
from serving.batching import BatchingParameters
from serving.model_manager import ModelConfig
from serving.savedmodel import LoadedVersion
from serving.server import ModelServer


def queue_full(enqueued: int, limit: int) -> str:
    return ("The batch scheduling queue to which this task was submitted is full; "
            f"currently {enqueued} batches enqueued and max_enqueued_batches is {limit}")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(base path, in-process answer function) for a small image classifier."""
    base = tmp_path_factory.mktemp("batching") / "images"
    tfs_models.images_tf2(str(base / "1"))
    reference = LoadedVersion("images", 1, str(base / "1"))
    sig = reference.signatures["serving_default"]
    yield base, lambda x: reference.run(sig, {"images": x}, ["probabilities"])["probabilities"]
    reference.close()


def _request(images: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "images"
    tensors.fill_proto(request.inputs["images"], images)
    return request


def _answer(response: predict_pb2.PredictResponse) -> np.ndarray:
    return tensors.to_array(response.outputs["probabilities"], 2**30)


def test_full_queue_is_unavailable_with_tf_servings_text(model):
    """max_batch_size 2, max_enqueued_batches 1, a 60 s timeout: request A (1 image) waits in the
    open batch; request B (2 images) fits no batch of the full queue: UNAVAILABLE, TF Serving's
    text. Request C (1 image) fills A's batch: both are answered, each with its own image's answer."""
    base, expected = model
    rng = np.random.default_rng(30)
    a, b, c = (rng.random((n, 28, 28), dtype=np.float32) for n in (1, 2, 1))
    params = BatchingParameters(max_batch_size=2, batch_timeout_micros=60_000_000, max_enqueued_batches=1,
                                num_batch_threads=1)
    with ModelServer([ModelConfig("images", str(base))], port=0, rest_port=None, batching=params) as srv, \
            tfs_client.prediction_stub(srv.target) as stub:
        pending_a = stub.Predict.future(_request(a), 120)
        refused: list[grpc.RpcError] = []

        def b_refused() -> bool:
            """B until it is refused: before A is queued B is a full batch of its own and answered."""
            try:
                np.testing.assert_allclose(_answer(stub.Predict(_request(b), 60)), expected(b), atol=1e-5)
                return False
            except grpc.RpcError as e:
                refused.append(e)
                return True
        wait_until(b_refused, "B refused while A waits in the queue", 60)
        assert refused[0].code() == grpc.StatusCode.UNAVAILABLE
        assert refused[0].details() == queue_full(1, 1)
        assert not pending_a.done()  # A still waits for its batch to fill (60 s timeout)
        np.testing.assert_allclose(_answer(stub.Predict(_request(c), 60)), expected(c), atol=1e-5)
        np.testing.assert_allclose(_answer(pending_a.result(60)), expected(a), atol=1e-5)
        np.testing.assert_allclose(_answer(stub.Predict(_request(b), 60)), expected(b), atol=1e-5)  # still up


def test_concurrent_clients_on_a_small_queue_get_their_answer_or_unavailable(model):
    """32 clients x 8 requests of one image each (all different) on one batch thread and a queue of
    one batch of 4: every request ends either with its own image's answer or with UNAVAILABLE and
    TF Serving's text -- none lost, none answered with another's rows -- and the server serves on."""
    base, expected = model
    clients, per_client = 32, 8
    images = np.random.default_rng(31).random((clients, per_client, 1, 28, 28), dtype=np.float32)
    params = BatchingParameters(max_batch_size=4, max_enqueued_batches=1, num_batch_threads=1)
    outcomes: dict[tuple[int, int], object] = {}
    errors: list[BaseException] = []
    with ModelServer([ModelConfig("images", str(base))], port=0, rest_port=None, batching=params) as srv:
        barrier = threading.Barrier(clients)

        def client(i: int) -> None:
            try:
                with tfs_client.prediction_stub(srv.target) as stub:
                    barrier.wait(timeout=60)
                    for j in range(per_client):
                        try:
                            outcomes[i, j] = _answer(stub.Predict(_request(images[i, j]), 60))
                        except grpc.RpcError as e:
                            outcomes[i, j] = e
            except BaseException as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors[:2]
        with tfs_client.prediction_stub(srv.target) as stub:  # the server is still up
            np.testing.assert_allclose(_answer(stub.Predict(_request(images[0, 0]), 60)), expected(images[0, 0]),
                                       atol=1e-5)
    assert len(outcomes) == clients * per_client
    refused = 0
    for (i, j), outcome in outcomes.items():
        if isinstance(outcome, grpc.RpcError):
            assert outcome.code() == grpc.StatusCode.UNAVAILABLE, outcome
            assert outcome.details() == queue_full(1, 1)
            refused += 1
        else:
            np.testing.assert_allclose(outcome, expected(images[i, j]), atol=1e-5, err_msg=f"client {i} call {j}")
    print(f"{clients * per_client} requests: {clients * per_client - refused} answered, {refused} UNAVAILABLE")
    assert refused < clients * per_client
