"""A real model server on 127.0.0.1 with the real SavedModel the sample pipeline pushed."""
import json
import os
import shutil
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import read_sample_rows, wait_until
from pipeline.clients.serving_cli import pixels_example
from schema.contract import CLASS_NAMES
from serving.batching import BatchingParameters
from serving.client import ServingClient
from serving.model_manager import AVAILABLE, END, ModelConfig
from serving.server import ModelServer


def push_copy(src: str, base, version: int) -> str:
    """Copy a version in the way the Pusher does: hidden staging directory, then one rename."""
    staging = os.path.join(base, f".staging-{version}")
    shutil.copytree(src, staging)
    final = os.path.join(base, str(version))
    os.rename(staging, final)
    return final


@pytest.fixture(scope="module")
def model_dir(sample_run):
    return sample_run[1].pushed_to


@pytest.fixture(scope="module")
def sample_rows():
    _, rows = read_sample_rows(limit=60)
    labels = np.array([r[0] for r in rows])
    images = np.array([r[1:] for r in rows], dtype=np.float32).reshape(-1, 28, 28)
    return labels, images


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("serving") / "fmnist"
    base.mkdir()
    push_copy(model_dir, base, 1)
    srv = ModelServer([ModelConfig("fmnist", str(base), labels=(("stable", 1),))], port=0, rest_port=0,
                      poll_seconds=0.2, max_message_bytes=4 * 1024 * 1024)
    srv.start()
    yield srv
    srv.stop(grace=2)


@pytest.fixture(scope="module")
def client(server):
    c = ServingClient(server.target, model="fmnist", timeout=30)
    yield c
    c.close()


def test_predict_through_every_signature(client, sample_rows):
    labels, images = sample_rows
    by_float = client.predict_images(images)
    by_uint8 = client.predict_images(images.astype(np.uint8))
    by_examples = client.predict_examples([pixels_example(i).SerializeToString() for i in images])
    for preds in (by_float, by_uint8, by_examples):
        assert len(preds) == len(labels) and preds[0].model_version == 1
        accuracy = np.mean([CLASS_NAMES[l] == p.class_name for l, p in zip(labels, preds)])
        assert accuracy > 0.7
    np.testing.assert_allclose([p.probabilities for p in by_float], [p.probabilities for p in by_examples], atol=1e-5)


def test_classify_metadata_status_and_health(client, server, sample_rows):
    labels, images = sample_rows
    # Classify on the export's classification signature: class names come from the model itself.
    response = client.classify([pixels_example(i) for i in images[:5]], signature="classification")
    assert len(response.result.classifications) == 5
    for c, label in zip(response.result.classifications, labels[:5]):
        assert [k.label for k in c.classes] == list(CLASS_NAMES)
        assert abs(sum(k.score for k in c.classes) - 1) < 1e-4
    sigs = client.metadata().signature_def
    assert {"serving_default", "serving_images", "serving_images_uint8", "classification"} <= set(sigs)
    assert "examples" in sigs["serving_default"].inputs and "class_name" in sigs["serving_images"].outputs
    status = client.status().model_version_status
    assert [(s.version, s.state) for s in status] == [(1, AVAILABLE)]
    stub = health_pb2_grpc.HealthStub(client.channel)
    assert stub.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING
    assert client.predict_images(images[:1], label="stable")[0].model_version == 1


def _code(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


def test_error_codes_and_the_server_goes_on(client, server, sample_rows):
    _, images = sample_rows
    other = ServingClient(server.target, model="nope")
    assert _code(lambda: other.predict_images(images[:1])) == grpc.StatusCode.NOT_FOUND
    other.close()
    assert _code(lambda: client.predict_images(images[:1], version=99)) == grpc.StatusCode.NOT_FOUND
    # TF Serving's codes: an unknown label is INVALID_ARGUMENT, an unknown signature FAILED_PRECONDITION.
    assert _code(lambda: client.predict_images(images[:1], label="canary")) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: client.predict_raw({"images": images[:1]}, signature="nope")) == \
        grpc.StatusCode.FAILED_PRECONDITION
    bad = {
        "missing input": ({"pixels": images[:1]}, "serving_images"),
        "wrong dtype": ({"images": images[:1].astype(np.int32)}, "serving_images"),
        "wrong shape": ({"images": np.zeros((1, 27, 28), np.float32)}, "serving_images"),
        "garbage example": ({"examples": np.array([b"\x00garbage"], dtype=object)}, "serving_default"),
    }
    for name, (inputs, sig) in bad.items():
        assert _code(lambda: client.predict_raw(inputs, signature=sig)) == grpc.StatusCode.INVALID_ARGUMENT, name
    huge = np.zeros((2000, 28, 28), np.float32)  # 6.3 MB > the 4 MB limit of this server
    assert _code(lambda: client.predict_images(huge)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Shapes are left to the model, as in TF Serving: a NaN image is answered, an empty batch is
    # refused by the graph itself (its reshape cannot infer the channel dimension).
    nan = client.predict_raw({"images": np.full((1, 28, 28), np.nan, np.float32)}, signature="serving_images")
    assert tf.make_ndarray(nan.outputs["probabilities"]).shape == (1, 10)
    assert _code(lambda: client.predict_raw({"images": np.zeros((0, 28, 28), np.float32)},
                                            signature="serving_images")) == grpc.StatusCode.INVALID_ARGUMENT
    # Regress needs a regression-shaped signature; this model has none.
    from tensorflow_serving.apis import regression_pb2
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "fmnist"
    request.input.example_list.examples.add()
    assert _code(lambda: client.predictions.Regress(request)) == grpc.StatusCode.INVALID_ARGUMENT
    assert client.predict_images(images[:2])[0].model_version == 1  # still serving


def test_rest_predict_and_status(server, sample_rows):
    labels, images = sample_rows
    base = f"http://127.0.0.1:{server.rest_port}/v1/models/fmnist"

    def post(url, body):
        req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    out = post(base + ":predict", {"signature_name": "serving_images", "instances": images[:3].tolist()})
    assert [p["class_name"] for p in out["predictions"]] == [
        p.class_name for p in ServingClient(server.target).predict_images(images[:3])]
    out = post(base + "/versions/1:predict", {"signature_name": "serving_images", "inputs": images[:2].tolist()})
    assert len(out["outputs"]["class_id"]) == 2
    with urllib.request.urlopen(base, timeout=10) as r:
        assert json.load(r)["model_version_status"][0]["state"] == "AVAILABLE"
    for url, body, code in [(base + "/versions/7:predict", {"instances": []}, 404),
                            (base + ":predict", {"signature_name": "serving_images", "instances": [[1, 2]]}, 400),
                            (base + ":predict", {"nothing": 1}, 400)]:
        with pytest.raises(urllib.error.HTTPError) as err:
            post(url, body)
        assert err.value.code == code


def _state(srv, version: int) -> int | None:
    client = ServingClient(srv.target)
    try:
        return {s.version: s.state for s in client.status().model_version_status}.get(version)
    finally:
        client.close()


def test_hot_swap_under_load_with_zero_failures(model_dir, tmp_path, sample_rows):
    _, images = sample_rows
    base = tmp_path / "fmnist"
    base.mkdir()
    push_copy(model_dir, base, 1)
    srv = ModelServer([ModelConfig("fmnist", str(base))], port=0, rest_port=None, poll_seconds=0.2,
                      batching=BatchingParameters(max_batch_size=16, batch_timeout_micros=1000))
    srv.start()
    stop, failures, versions = threading.Event(), [], []

    def load_loop():
        c = ServingClient(srv.target, timeout=30)
        while not stop.is_set():
            try:
                versions.append(c.predict_images(images[:2])[0].model_version)
            except grpc.RpcError as e:
                failures.append(e)
        c.close()

    threads = [threading.Thread(target=load_loop) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: len(versions) >= 20, "20 answers from version 1")
        # A broken version: never served, the error is visible in GetModelStatus.
        broken = base / ".staging-5"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"garbage")
        os.rename(broken, base / "5")
        push_copy(model_dir, base, 2)
        wait_until(lambda: versions[-1] == 2, "an answer from version 2")
        shutil.rmtree(base / "1")
        wait_until(lambda: _state(srv, 1) == END, "version 1 unloaded after its directory went")
        answered = len(versions)
        wait_until(lambda: len(versions) >= answered + 20, "20 more answers after the unload")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    status = {s.version: s for s in ServingClient(srv.target).status().model_version_status}
    srv.stop(grace=2)
    assert failures == [], failures[:3]
    assert versions[0] == 1 and versions[-1] == 2
    assert status[2].state == AVAILABLE and status[1].state == END
    assert status[5].state == END and status[5].status.error_message


def test_version_policies_and_labels_from_a_config_file(model_dir, tmp_path):
    from serving.model_manager import models_from_file

    base = tmp_path / "models" / "fmnist"
    base.mkdir(parents=True)
    for v in (1, 2, 3):
        push_copy(model_dir, base, v)
    config = tmp_path / "models.yaml"
    config.write_text("models:\n"
                      "  - name: fmnist\n    base_path: models/fmnist\n    version_policy: {latest: 2}\n"
                      "    version_labels: {stable: 2, canary: 3}\n"
                      "  - name: pinned\n    base_path: models/fmnist\n    version_policy: {specific: [1]}\n")
    with ModelServer(models_from_file(str(config)), port=0, rest_port=None) as srv:
        c = ServingClient(srv.target)
        assert [s.version for s in c.status().model_version_status if s.state == AVAILABLE] == [2, 3]
        image = np.zeros((1, 28, 28), np.float32)
        assert c.predict_images(image)[0].model_version == 3                 # latest by default
        assert c.predict_images(image, label="stable")[0].model_version == 2
        assert c.predict_images(image, version=2)[0].model_version == 2
        assert _code(lambda: c.predict_images(image, version=1)) == grpc.StatusCode.NOT_FOUND
        pinned = ServingClient(srv.target, model="pinned")
        assert pinned.predict_images(image)[0].model_version == 1
        pinned.close()
        c.close()
