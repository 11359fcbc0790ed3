"""The client side: photo conversion on pictures the test draws, `fmnist predict` and `fmnist serve`
as a user runs them (subprocess), SIGTERM draining, and gRPC over TLS with a test-made certificate."""
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
from PIL import Image, ImageDraw

import served_traffic
from pipeline.clients.photo_input import fashion_mnist_input
from pipeline.config import PROJECT_ROOT
from serving.client import ServingClient
from serving.ports import free_port


def _trouser_photo(size=(700, 1000), background=(255, 255, 255), colour=(30, 30, 120)) -> Image.Image:
    """A product-photo-like picture: a dark pair of trousers on a white background, off-centre."""
    img = Image.new("RGB", size, background)
    d = ImageDraw.Draw(img)
    w, h = size
    left, top = int(w * 0.30), int(h * 0.15)
    d.rectangle([left, top, left + int(w * 0.30), top + int(h * 0.08)], fill=colour)           # waist
    d.rectangle([left, top, left + int(w * 0.11), top + int(h * 0.70)], fill=colour)           # left leg
    d.rectangle([left + int(w * 0.19), top, left + int(w * 0.30), top + int(h * 0.70)], fill=colour)
    return img


def test_dark_on_white_photo_is_inverted_cropped_and_centred():
    arr = fashion_mnist_input(_trouser_photo())
    assert arr.shape == (28, 28) and arr.dtype == np.uint8  # the 8-bit values the dataset has
    assert arr.max() == pytest.approx(255, abs=1) and arr.min() >= 0
    assert arr[:, :4].max() < 10 and arr[:, -4:].max() < 10  # black background beside it, as in Fashion-MNIST
    rows, cols = np.nonzero(arr > 60)
    assert rows.min() == 0 and rows.max() == 27        # trimmed: the longest side spans 28 pixels
    assert abs((cols.min() + cols.max()) / 2 - 13.5) < 2.5  # and is centred
    assert arr[20, 11:17].min() < 60                    # the gap between the legs survives


def test_colour_large_non_square_and_already_dark_inputs():
    colour = fashion_mnist_input(_trouser_photo(size=(1600, 900), colour=(200, 20, 20)))
    assert colour.shape == (28, 28) and colour.max() > 200
    dark = np.zeros((40, 60), np.uint8)
    dark[5:35, 20:40] = 220  # already light-on-dark: must not be inverted
    out = fashion_mnist_input(Image.fromarray(dark))
    assert out[14, 14] > 200 and out[0, 0] < 10
    rgba = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).ellipse([100, 50, 200, 150], fill=(10, 10, 10, 255))
    out = fashion_mnist_input(rgba)  # transparency counts as white background
    assert out[14, 14] > 200 and out[0, 0] < 10


# `fmnist serve --grace` in the SIGTERM test: longer than any model call is expected to take, so
# nothing in flight is cut off, and the bound for the clients and the server's exit.
DRAIN_GRACE = 600


def _wait_serving(target: str, timeout: float = 120) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(target) as ch:
                r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no server on {target}")


@pytest.fixture(scope="module")
def served_base(sample_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    os.makedirs(base / "fmnist")
    import shutil
    shutil.copytree(sample_run[1].pushed_to, base / "fmnist" / "3")
    return base


def test_fmnist_serve_predict_and_sigterm_drain(served_base, tmp_path):
    port, rest = free_port(), free_port()
    cmd = [sys.executable, "-m", "pipeline.cli", "serve", "--model-base", str(served_base),
           "--port", str(port), "--rest-port", str(rest), "--batching", "--grace", str(DRAIN_GRACE)]
    output = tmp_path / "server.log"   # a file, not a pipe nobody reads while the server runs
    with open(output, "w") as out_file:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=out_file, stderr=subprocess.STDOUT, text=True)
    target = f"127.0.0.1:{port}"
    try:
        _wait_serving(target)
        photo = tmp_path / "trousers.jpg"
        _trouser_photo().save(photo)
        out = subprocess.run([sys.executable, "-m", "pipeline.cli", "predict", str(photo),
                              str(PROJECT_ROOT / "data/sample/fashion-mnist_test.csv.gz"), "--limit", "10",
                              "--server", target, "--json"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        results = json.loads(out.stdout)
        assert len(results) == 11 and results[0]["file"].endswith("trousers.jpg")
        assert results[0]["class"] == "Trouser", results[0]
        assert len(results[0]["top3"]) == 3 and results[0]["model_version"] == 3
        rows = results[1:]
        assert sum(r["class"] == r["true_class"] for r in rows) >= 7

        # SIGTERM while requests are in flight: they complete, then the process exits 0. Six clients
        # send one request after another, each with its own images; the signal goes once every
        # client has had an answer (an event, not a sleep), so requests are in flight at that moment.
        # The clients wait as long as the server drains: a model call here has been seen to take
        # minutes (RELIABILITY.md, "A model call that stalls"), and a shorter client deadline would
        # report that stall as DEADLINE_EXCEEDED instead of showing whether the drain finished it.
        client = ServingClient(target, timeout=DRAIN_GRACE)
        _, sample = served_traffic.test_images(limit=6 * 64)
        answers, errors = [], []
        lock, all_answered = threading.Lock(), threading.Event()

        def calls(k: int) -> None:
            images = sample[k * 64:(k + 1) * 64]
            expected = client.predict_images(images)  # also this client's first answer
            with lock:
                answers.append((k, time.monotonic(), time.monotonic(), expected, expected))
                if len({a[0] for a in answers}) == 6:
                    all_answered.set()
            for _ in range(10_000):  # bounded; ends at the first refusal once the server stops
                sent = time.monotonic()
                try:
                    got = client.predict_images(images)
                except grpc.RpcError as e:
                    errors.append((sent, time.monotonic(), e))
                    return
                with lock:
                    answers.append((k, sent, time.monotonic(), got, expected))

        threads = [threading.Thread(target=calls, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        assert all_answered.wait(timeout=300)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        bound = time.monotonic() + DRAIN_GRACE + 60
        for t in threads:
            t.join(timeout=max(bound - time.monotonic(), 0))
        try:
            code = proc.wait(timeout=max(bound - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            code = None
        if code is None or any(t.is_alive() for t in threads) or any(
                e.code() == grpc.StatusCode.DEADLINE_EXCEEDED for _, _, e in errors):
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)   # the server's thread stacks (serve_until_signalled)
                time.sleep(3)
            pytest.fail(f"no clean drain {time.monotonic() - signalled:.0f} s after SIGTERM (exit code {code}); "
                        f"{len(errors)} clients refused: {errors}; the server's output and threads:\n"
                        f"{output.read_text()[-20000:]}")
        assert code == 0, output.read_text()[-5000:]
        # Every client ended on a refusal, none hung; every answer is complete and is its own
        # client's answer. A refusal is UNAVAILABLE (nothing listens any more) or CANCELLED: grpcio's
        # Server.stop(grace) "immediately stops the server from servicing new RPCs" by cancelling
        # calls no handler has started, while started ones run until the grace ends (DRAIN_GRACE,
        # so none is cut off). Which of the two a call gets depends on when it reached the server,
        # which a client clock cannot tell (stress: CANCELLED for calls sent 0.2-0.3 ms before the
        # signal), so both count as refusals; the drain is what the next assertion shows.
        assert len(errors) == 6, errors
        for sent, received, e in errors:
            assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), (sent - signalled, e)
            # A refusal comes at once; a CANCELLED at the end of the grace would be a call cut off.
            assert received - signalled < DRAIN_GRACE, (sent - signalled, received - signalled, e)
        for k, sent, received, got, expected in answers:
            assert [p.class_id for p in got] == [p.class_id for p in expected], k
            np.testing.assert_allclose([p.probabilities for p in got], [p.probabilities for p in expected],
                                       atol=1e-5)
        # Requests sent before the signal and answered after it: the drain finished them.
        assert any(sent < signalled < received for _, sent, received, _, _ in answers)
    finally:
        if proc.poll() is None:
            proc.kill()


def _self_signed_localhost() -> tuple[bytes, bytes]:
    """(private key PEM, certificate PEM) of a fresh self-signed certificate for `localhost`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


def test_grpc_over_tls(served_base, tmp_path):
    from serving.model_manager import models_from_base
    from serving.server import ModelServer

    key_pem, cert_pem = _self_signed_localhost()
    _, stranger_pem = _self_signed_localhost()
    with ModelServer(models_from_base(str(served_base)), port=0, rest_port=None, tls=(key_pem, cert_pem)) as srv:
        target = f"localhost:{srv.port}"
        secure = ServingClient(target, root_certificates=cert_pem, timeout=30)
        assert secure.predict_images(np.zeros((1, 28, 28), np.float32))[0].model_version == 3
        secure.close()
        # A plaintext client, and a TLS client that does not trust the server's certificate: gRPC
        # fails the connection itself, which it reports as UNAVAILABLE (grpc/doc/statuscodes.md:
        # "Failed to establish connection"), never as an answer or another status.
        for client in (ServingClient(target, timeout=10),
                       ServingClient(target, root_certificates=stranger_pem, timeout=10)):
            with pytest.raises(grpc.RpcError) as err:
                client.predict_images(np.zeros((1, 28, 28), np.float32))
            client.close()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, (err.value.code(), err.value.details())
