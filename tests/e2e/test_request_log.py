"""Sampled request logging (`logging_config` of TF Serving's ModelServerConfig), on a real server
on 127.0.0.1 with TF Serving's half_plus_two model: sampling rate within binomial bounds, records
that hold request and response, drops counted and shown in the model status, no failed request
under load at rate 1.0, and readable TFRecord files after SIGTERM in the middle of load."""
import contextlib
import math
import signal
import subprocess
import sys
import threading
import time
from typing import Iterator

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import prediction_log_pb2

import tfs_client
import tfs_models
from pipeline.config import PROJECT_ROOT
from serving.model_manager import ModelConfig
from serving.ports import free_port
from serving.request_log import LoggerLimits, LoggingConfig, log_files, read_logs
from serving.server import ModelServer

MODEL = "half_plus_two"


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    root = tmp_path_factory.mktemp("reqlog")
    tfs_models.half_plus_two_tf1(str(root / MODEL / "123"))
    return root / MODEL


def _request(x: float):
    return tfs_client.half_plus_two_request(MODEL, x)


def _status_message(target: str) -> str:
    return tfs_client.model_status(target, MODEL, timeout=10).model_version_status[0].status.error_message


def test_sampling_rate_and_record_contents(model_base, tmp_path):
    """At rate 0.3, 1200 gRPC calls: the logged count lies within 5 standard deviations of the
    binomial mean; every record is a predict_log with the request's x and the response's y and the
    metadata TF Serving fills. REST calls are logged in the same format."""
    rate, calls = 0.3, 1200
    prefix = tmp_path / "logs" / "hpt"
    config = ModelConfig(MODEL, str(model_base), logging=LoggingConfig(str(prefix), rate))
    with ModelServer([config], port=0, rest_port=0, poll_seconds=0) as server:
        with tfs_client.prediction_stub(server.target) as stub:
            for i in range(calls):
                stub.Predict(_request(float(i)), timeout=60)
        deadline = time.monotonic() + 120
        while "records written" not in _status_message(server.target) and time.monotonic() < deadline:
            time.sleep(0.1)
        status_before_stop = _status_message(server.target)
    records = list(read_logs(log_files(str(tmp_path / "logs"))))
    mean, sd = calls * rate, math.sqrt(calls * rate * (1 - rate))
    assert abs(len(records) - mean) < 5 * sd, (len(records), mean, sd)
    xs = set()
    for entry in records:
        assert entry.WhichOneof("log_type") == "predict_log"
        x = entry.predict_log.request.inputs["x"].float_val[0]
        y = entry.predict_log.response.outputs["y"].float_val[0]
        assert y == pytest.approx(0.5 * x + 2.0)
        meta = entry.log_metadata
        assert (meta.model_spec.name, meta.model_spec.version.value) == (MODEL, 123)
        assert meta.model_spec.signature_name == "serving_default"
        assert meta.sampling_config.sampling_rate == pytest.approx(rate)
        assert list(meta.saved_model_tags) == ["serve"]
        xs.add(x)
    assert len(xs) == len(records)  # each logged once
    assert "records written" in status_before_stop and "0 dropped" in status_before_stop

    # REST at rate 1.0: every call logged, as a PredictionLog with tensors.
    rest_prefix = tmp_path / "rest-logs" / "hpt"
    config = ModelConfig(MODEL, str(model_base), logging=LoggingConfig(str(rest_prefix), 1.0))
    with ModelServer([config], port=0, rest_port=0, poll_seconds=0) as server:
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}:predict"
        for x in (1.0, 5.0):
            assert requests.post(url, json={"instances": [x]}, timeout=10).json() == {"predictions": [0.5 * x + 2]}
    rest_records = list(read_logs(log_files(str(tmp_path / "rest-logs"))))
    assert [r.predict_log.request.inputs["x"].float_val[0] for r in rest_records] == [1.0, 5.0]
    assert [r.predict_log.response.outputs["y"].float_val[0] for r in rest_records] == [2.5, 4.5]


def test_full_queue_drops_are_counted_and_reported(model_base, tmp_path):
    """With the writer busy and a queue of one record, further sampled requests still succeed;
    their records are dropped, counted, and the count is in GetModelStatus and REST status."""
    config = ModelConfig(MODEL, str(model_base), logging=LoggingConfig(str(tmp_path / "q" / "m"), 1.0))
    with ModelServer([config], port=0, rest_port=0, poll_seconds=0,
                     request_log_limits=LoggerLimits(queue_size=1)) as server:
        started, release = threading.Event(), threading.Event()

        def busy_writer():
            started.set()
            release.wait(30)
            return prediction_log_pb2.PredictionLog()

        server.request_logs.logger(MODEL).offer(123, "", busy_writer)
        assert started.wait(10)
        with tfs_client.prediction_stub(server.target) as stub:
            answers = [stub.Predict(_request(float(i)), timeout=60).outputs["y"].float_val[0] for i in range(6)]
        assert answers == [0.5 * i + 2 for i in range(6)]
        assert "5 dropped" in _status_message(server.target)
        rest = requests.get(f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}", timeout=10).json()
        assert "5 dropped" in rest["model_version_status"][0]["status"]["error_message"]
        assert rest["model_version_status"][0]["status"]["error_code"] == "OK"
        release.set()
    records = list(read_logs(log_files(str(tmp_path / "q"))))
    assert len(records) == 2  # the busy one and the one that fitted in the queue


def _config_logging_everything(tmp_path, model_base) -> str:
    """A TF Serving model config file: the model, every request logged under tmp_path/logs."""
    config = tmp_path / "models.config"
    config.write_text(f"""model_config_list {{ config {{ name: "{MODEL}" base_path: "{model_base}"
      logging_config {{ log_collector_config {{ filename_prefix: "{tmp_path / 'logs' / 'hpt'}" }}
                       sampling_config {{ sampling_rate: 1.0 }} }} }} }}""")
    return str(config)


@contextlib.contextmanager
def _serving(config: str, port: int, *flags: str, **popen_args) -> Iterator[subprocess.Popen]:
    """`python -m serving` as a user starts it, on 127.0.0.1:port with that config file; killed on
    the way out if the test left it running."""
    proc = subprocess.Popen([sys.executable, "-m", "serving", f"--port={port}", "--rest_api_port=0",
                             f"--model_config_file={config}", *flags], cwd=PROJECT_ROOT, **popen_args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _stop(clients: list[threading.Thread], stop: threading.Event) -> None:
    stop.set()
    for c in clients:
        c.join(30)


def _load(target: str, stop: threading.Event, results: list, limit: int) -> None:
    """One client: sequential predicts until told to stop (bounded by `limit`)."""
    with tfs_client.prediction_stub(target) as stub:
        for i in range(limit):
            if stop.is_set():
                return
            try:
                stub.Predict(_request(float(i)), timeout=60)
                results.append(True)
            except grpc.RpcError as e:
                results.append(e.code())


def test_rate_one_under_load_then_sigterm_leaves_readable_files(model_base, tmp_path):
    """`python -m serving` with logging at rate 1.0 and small rotating files: 4 clients, no failed
    request; then SIGTERM while they keep sending: the process exits 0, every file reads to the
    end, and every request answered before the shutdown is in the log."""
    config = _config_logging_everything(tmp_path, model_base)
    port = free_port()
    target = f"127.0.0.1:{port}"
    with _serving(config, port, "--request_log_max_file_mb=0.05", "--grace=10",
                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        deadline = time.monotonic() + 180
        while True:
            try:
                with tfs_client.prediction_stub(target) as stub:
                    stub.Predict(_request(1.0), timeout=5)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.5)
        results: list = []
        stop = threading.Event()
        clients = [threading.Thread(target=_load, args=(target, stop, results, 400)) for _ in range(4)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(120)
        assert len(results) == 1600 and all(r is True for r in results), {str(r) for r in results if r is not True}

        during: list = []
        clients = [threading.Thread(target=_load, args=(target, stop, during, 100_000)) for _ in range(4)]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 120  # the signal goes once requests are flowing (an event, not a sleep)
        while sum(1 for r in during if r is True) < 20:
            assert time.monotonic() < deadline and proc.poll() is None, during[-3:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
        _stop(clients, stop)
    assert proc.returncode == 0, out[-2000:]
    files = log_files(str(tmp_path / "logs"))
    assert len(files) > 1  # rotated at 50 kB
    import tensorflow as tf
    records = 0
    for path in files:  # every file complete: the strict reader raises on a torn record
        records += sum(1 for _ in tf.data.TFRecordDataset(path))
    answered = 1 + 1600 + sum(1 for r in during if r is True)
    assert sum(1 for r in during if r is True) > 0
    assert records >= answered and records <= 1 + 1600 + len(during), (records, answered, len(during))
    assert "dropped" not in out or "0 dropped" in out
    assert np.all([r.predict_log.response.outputs["y"].float_val for r in read_logs(files[:1])])


def test_sigkill_loses_at_most_the_unflushed_tail(model_base, tmp_path):
    """A crash (SIGKILL) under load at rate 1.0 with 0.5 s flushes: the files read back (a torn
    last record is skipped), and every record that was on disk before the kill is still there.
    The kill waits for the event it needs -- the periodic flush has written at least 50 records
    while the clients keep sending -- instead of a fixed time."""
    config = _config_logging_everything(tmp_path, model_base)
    port = free_port()
    target = f"127.0.0.1:{port}"
    answered: list[float] = []
    stop = threading.Event()

    def client() -> None:
        with tfs_client.prediction_stub(target) as stub:
            for i in range(100_000):
                if stop.is_set():
                    return
                try:
                    stub.Predict(_request(float(i)), timeout=60)
                    answered.append(time.monotonic())
                except grpc.RpcError:
                    if answered:  # after the kill
                        return
                    time.sleep(0.2)

    def on_disk() -> int:
        return sum(1 for _ in read_logs(log_files(str(tmp_path / "logs"))))
    with _serving(config, port, "--request_log_flush_seconds=0.5",
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        clients = [threading.Thread(target=client) for _ in range(2)]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 180
        while (flushed := on_disk()) < 50:  # written by the flush timer alone: no stop, no SIGTERM
            assert time.monotonic() < deadline and proc.poll() is None, (flushed, len(answered))
            time.sleep(0.2)
        proc.kill()
        proc.wait(30)
        _stop(clients, stop)
    records = on_disk()
    # At most one record more per client than answers seen: a request logged and flushed whose
    # answer was still on its way when the process died.
    assert flushed <= records <= len(answered) + len(clients), (flushed, records, len(answered))
