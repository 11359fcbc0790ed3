"""`fmnist models promote|rollback` on a real server on 127.0.0.1 serving two versions of the
sample run's model: label moves under load with no failed request, by HandleReloadConfigRequest and
by the server's config poll. (The config file the commands write: tests/unit/test_serving_files.py.)"""
import shutil
import threading
import time

import grpc
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import served_traffic
from pipeline import cli
from serving.config import read_model_config_file


@pytest.fixture
def stable_on_1(sample_run, tmp_path):
    """Copies of the sample run's pushed model as versions under tmp_path/models/fmnist, and a
    models.config written by `fmnist models promote 1` (stable -> 1); returns (base, config)."""
    from serving.versions import list_versions

    def make(*versions: int) -> tuple:
        base = tmp_path / "models" / "fmnist"
        base.mkdir(parents=True)
        pushed = max(list_versions(sample_run[0].serving_model_dir).items())[1]
        for v in versions:
            shutil.copytree(pushed, base / str(v))
        config = str(tmp_path / "models.config")
        assert cli.main(["models", "promote", "1", "--config", config, "--model", "fmnist",
                         "--base-path", str(base)]) == 0
        return base, config
    return make


class _StableLoad:
    """Client threads asking for `stable` until stopped; every answer as (sent, received, version).

    Assertions about "after the move" use the time a request was *sent*: a request sent after the
    server applied a move must be answered by the new version, whatever the scheduler does to the
    client thread afterwards (a receive time would make the check depend on thread wake-ups).
    """

    def __init__(self, target: str, threads: int = 3) -> None:
        self.answers: list[tuple[float, float, int]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        _, images = served_traffic.test_images(limit=8)
        self._images = images
        self._threads = [threading.Thread(target=self._run, args=(target, i)) for i in range(threads)]

    def _run(self, target: str, i: int) -> None:
        import tensorflow as tf

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "fmnist"
        request.model_spec.version_label = "stable"
        request.model_spec.signature_name = "serving_images_uint8"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(self._images[i:i + 1]))
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(200_000):  # bounded
                if self._stop.is_set():
                    return
                sent = time.monotonic()
                try:
                    response = stub.Predict(request, timeout=60)
                    self.answers.append((sent, time.monotonic(), response.model_spec.version.value))
                except grpc.RpcError as e:
                    self.failures.append(f"{e.code().name}: {e.details()}")

    def __enter__(self) -> "_StableLoad":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def first_answer_from(self, version: int, after: float, timeout: float = 120) -> float:
        """When the first request sent at or after `after` was answered by `version`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for sent, received, v in list(self.answers):
                if sent >= after and v == version:
                    return received
            time.sleep(0.02)
        raise AssertionError(f"no answer from version {version} within {timeout} s")

    def versions_sent_after(self, moment: float, at_least: int = 30, timeout: float = 120) -> set[int]:
        """The versions that answered requests sent after `moment`, once `at_least` of them came back."""
        deadline = time.monotonic() + timeout
        while len(later := [v for sent, _, v in list(self.answers) if sent > moment]) < at_least:
            assert time.monotonic() < deadline, f"only {len(later)} answers to requests sent after the move"
            time.sleep(0.02)
        return set(later)


def test_promote_and_rollback_under_load(stable_on_1, capsys):
    """Three clients keep asking for `stable`. Promote 2 with --server (HandleReloadConfigRequest):
    when the command returns, `stable` is version 2 -- every request sent after that is answered by
    2. Roll back without --server: the server's 1 s config poll moves `stable` back to version 1,
    which the promotion kept loaded; once one request is answered by 1, every request sent after
    that answer is answered by 1. Zero failed requests throughout. (How long the moves take is
    printed here and measured in `make bench-monitoring`, not asserted.)"""
    from serving.server import ModelServer

    base, config = stable_on_1(1, 2)
    server = ModelServer(read_model_config_file(config), port=0, rest_port=None, poll_seconds=0,
                         model_config_file=config, config_poll_seconds=1.0)
    with server, _StableLoad(server.target) as load:
        load.first_answer_from(1, after=0)
        started = time.monotonic()
        assert cli.main(["models", "promote", "2", "--config", config, "--server", server.target]) == 0
        returned = time.monotonic()
        promote_seconds = load.first_answer_from(2, after=started) - started
        assert load.versions_sent_after(returned) == {2}
        assert server.manager.available("fmnist") == [1, 2]  # 1 kept loaded for a rollback

        started = time.monotonic()
        assert cli.main(["models", "rollback", "--config", config]) == 0
        moved_back = load.first_answer_from(1, after=started)
        assert load.versions_sent_after(moved_back) == {1}
    assert load.failures == [], load.failures[:5]
    print(f"promote (reload request) {promote_seconds:.2f} s, rollback (config poll) {moved_back - started:.2f} s")


def test_reload_refuses_a_label_on_a_version_that_cannot_load(stable_on_1):
    """A label moved to a broken version: the reload fails, the file is left as it was, `stable`
    keeps answering from the version it had."""
    from serving.server import ModelServer

    base, config = stable_on_1(1)
    (base / "2").mkdir()
    (base / "2" / "saved_model.pb").write_bytes(b"not a model")
    before = open(config).read()
    with ModelServer(read_model_config_file(config), port=0, rest_port=None, poll_seconds=0) as server:
        assert cli.main(["models", "promote", "2", "--config", config, "--server", server.target]) == 2
        assert open(config).read() == before
        assert server.manager.resolve("fmnist", label="stable").version == 1


def test_config_poll_applies_the_file_over_a_config_sent_by_request(stable_on_1):
    """With polling on, the file is the truth: a config sent by HandleReloadConfigRequest that
    differs from an unchanged file is replaced by the file's at the next poll (the poller compares
    the file with the config in force, not with the file's previous text)."""
    from pipeline.monitoring import model_labels
    from serving.server import ModelServer

    base, config = stable_on_1(1, 2)
    with ModelServer(read_model_config_file(config), port=0, rest_port=None, poll_seconds=0,
                     model_config_file=config, config_poll_seconds=0.5) as server:
        sent = model_labels.read_config(config)
        model_labels.set_label(sent.model_config_list.config[0], "stable", 2, standby=1)
        model_labels.reload_server(server.target, sent, config)  # raises unless applied (stable -> 2)
        deadline = time.monotonic() + 30
        while server.manager.resolve("fmnist", label="stable").version != 1:
            assert time.monotonic() < deadline, "the poll never put the file's config back"
            time.sleep(0.1)
