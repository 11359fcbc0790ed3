"""Servability before push: the InfraValidator step starts the model server as a local process,
queries it with test rows, gates on latency, and writes TF Serving warm-up records into what the
Pusher pushes. Real server processes on 127.0.0.1, real SavedModels."""
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import small_config
from pipeline import runner
from pipeline.config import PROJECT_ROOT
from schema import contract
from serving.ports import free_port


def _digest(path: str) -> str:
    digest = hashlib.sha256()
    for parent, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            file = os.path.join(parent, name)
            digest.update(os.path.relpath(file, path).encode() + Path(file).read_bytes())
    return digest.hexdigest()


def _warmup_logs(model_dir: str) -> list:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(model_dir, "assets.extra", "tf_serving_warmup_requests")
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def test_sample_run_is_infra_blessed_and_pushes_the_model_with_warmup_requests(sample_run):
    config, summary = sample_run
    infra = summary.component("InfraValidator")
    assert infra is not None and infra.state in ("COMPLETE", "CACHED")
    props = infra.outputs["blessing"][0].custom_properties
    assert props["blessed"].int_value == 1 and props["has_model"].int_value == 1
    assert props["server"].string_value in ("tensorflow_model_server", "python -m serving")
    # Real calls were timed (the percentiles' arithmetic is tests/unit/test_infra_latency.py's); each
    # call has a 30 s deadline, and this run measures without a gate (NO_LATENCY_GATE: threshold 0).
    p50, p99 = props["latency_p50_ms"].double_value, props["latency_p99_ms"].double_value
    assert 0 < p50 < 30_000 and 0 < p99 < 30_000, (p50, p99)
    assert props["latency_threshold_ms"].double_value == config.infra_latency_p99_ms == 0
    assert "servable: yes" in runner.format_summary(summary, config)
    logs = _warmup_logs(summary.pushed_to)
    kinds = [log.WhichOneof("log_type") for log in logs]
    assert kinds.count("predict_log") == kinds.count("classify_log") == config.infra_num_examples
    # The records are real test rows in the layout a TF Serving client sends (pixel1..pixel784).
    first = logs[1].classify_log.request.input.example_list.examples[0].features.feature
    assert len(first) == 784 and sum(first[f"pixel{i}"].int64_list.value[0] for i in range(1, 785)) > 0


def test_the_server_replays_the_shipped_warmup_requests_at_load(sample_run, tmp_path):
    config, summary = sample_run
    model_dir = summary.pushed_to
    base = tmp_path / "models" / config.model_name
    shutil.copytree(model_dir, base / "1")
    port = free_port()
    log_file = tmp_path / "server.log"
    with open(log_file, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "serving", f"--port={port}", "--rest_api_port=0",
             f"--model_name={config.model_name}", f"--model_base_path={base}"],
            cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and "warm-up records" not in log_file.read_text():
            assert server.poll() is None, log_file.read_text()[-3000:]
            time.sleep(0.5)
        assert f"({2 * config.infra_num_examples} warm-up records)" in log_file.read_text()
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.fixture(scope="module")
def latency_fault_run(sample_run, tmp_path_factory):
    """The sample pipeline again, with an impossible latency gate (data and Trainer from cache)."""
    config, first = sample_run
    tmp = tmp_path_factory.mktemp("infra-latency")
    shutil.copytree(config.output_root, tmp / "out", symlinks=True)
    # The cached Trainer's model is the served one: "no evidence" against itself, so the policy
    # that blesses a proven no-loss lets it reach the InfraValidator, whose gate is the subject.
    strict = small_config(tmp, config.data_root, infra_latency_p99_ms=0.001, no_evidence_policy="non_inferior")
    before = _digest(strict.serving_model_dir)
    summary = runner.run_local(strict, progress=False)
    return strict, summary, before


def test_a_model_that_misses_the_latency_gate_is_never_pushed(latency_fault_run):
    config, summary, before = latency_fault_run
    assert summary.component("Trainer").state == "CACHED"
    props = summary.component("InfraValidator").outputs["blessing"][0].custom_properties
    assert props["blessed"].int_value == 0
    assert props["failed_check"].string_value == "latency"
    assert "p99" in props["failure"].string_value and "threshold 0.001 ms" in props["failure"].string_value
    assert summary.pushed_to is None
    assert _digest(config.serving_model_dir) == before
    text = runner.format_summary(summary, config)
    assert "servable: NO -- latency check failed" in text
    assert runner.exit_code(summary) == runner.EXIT_NOT_SERVABLE


def _validate(model_dir: str, examples_uri: str, tmp_path: Path):
    """The InfraValidator executor run directly on one candidate (real server process)."""
    from tfx import types
    from tfx.dsl.components.base import base_executor
    from tfx.types import standard_artifacts

    from components.infra_validator import LocalInfraValidator

    model = standard_artifacts.Model()
    model.uri = model_dir
    examples = standard_artifacts.Examples()
    examples.uri = examples_uri
    examples.split_names = '["train", "test"]'
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    component = LocalInfraValidator(
        model=types.Channel(type=standard_artifacts.Model), examples=types.Channel(type=standard_artifacts.Examples),
        model_name="fmnist", split="test", num_examples=2, latency_p99_ms=1000.0, latency_requests=10,
        num_tries=1, max_loading_time_seconds=60)
    executor = component.executor_spec.executor_class(
        base_executor.BaseExecutor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="1"))
    executor.Do({"model": [model], "examples": [examples]}, {"blessing": [blessing]}, component.exec_properties)
    return blessing


def test_a_model_that_loads_in_python_but_cannot_be_queried_is_not_blessed(sample_run, tmp_path):
    """serving_default takes float images, not the tf.Examples clients send: it loads (the
    Pusher's own load check would pass) but the Predict the server is sent fails."""
    import tensorflow as tf

    class Images(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="images")])
        def serve(self, images):
            return {"probabilities": tf.nn.softmax(tf.zeros([tf.shape(images)[0], 10]))}

    model_dir = str(tmp_path / "model")
    module = Images()
    tf.saved_model.save(module, os.path.join(model_dir, "Format-Serving"), signatures={"serving_default": module.serve})
    assert "serving_default" in tf.saved_model.load(os.path.join(model_dir, "Format-Serving")).signatures
    _, summary = sample_run
    blessing = _validate(model_dir, summary.component(contract.EXAMPLE_GEN).outputs["examples"][0].uri, tmp_path)
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_string_custom_property("failed_check") == "query"
    failure = blessing.get_string_custom_property("failure")
    assert "serving_default" in failure and "INVALID_ARGUMENT" in failure
    assert os.path.exists(os.path.join(blessing.uri, "INFRA_NOT_BLESSED"))


def test_a_model_the_server_cannot_load_fails_the_load_check(sample_run, tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / "Format-Serving").mkdir(parents=True)
    (model_dir / "Format-Serving" / "saved_model.pb").write_bytes(b"not a SavedModel")
    _, summary = sample_run
    blessing = _validate(str(model_dir), summary.component(contract.EXAMPLE_GEN).outputs["examples"][0].uri, tmp_path)
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_string_custom_property("failed_check") == "load"
    assert "did not load the model" in blessing.get_string_custom_property("failure")
