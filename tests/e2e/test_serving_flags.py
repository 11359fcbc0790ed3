"""TF Serving's command line, run as a user runs it: `python -m serving` (and `fmnist serve`) as a
subprocess with tensorflow_model_server's flags, a text-format ModelServerConfig and
BatchingParameters. Cases from tensorflow_serving/model_servers/tensorflow_model_server_test.py
(TMS): testGoodModelConfig, testModelConfigReload, testBadModelConfig, and the batching flags."""
import subprocess
import sys
import time

import grpc
import pytest

import tfs_client
import tfs_models
from pipeline.config import PROJECT_ROOT
from serving.ports import free_port

CONFIG = """model_config_list: {{
  config: {{ name: "{name}", base_path: "{path}", model_platform: "tensorflow"
            model_version_policy {{ specific {{ versions: 123 }} }}
            version_labels {{ key: "stable" value: 123 }} }}
}}
"""


def _predict(target, name, label=None, timeout=5):
    with tfs_client.prediction_stub(target) as stub:
        return stub.Predict(tfs_client.half_plus_two_request(name, label=label), timeout).outputs["y"].float_val[0]


def _until(call, seconds=180):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("flags")
    tfs_models.half_plus_two_tf1(str(root / "half_plus_two" / "00000123"))
    tfs_models.half_plus_two_tf1(str(root / "half_plus_three" / "00000123"), b=3.0, c=4.0)
    return root


def test_model_config_file_reload_and_batching_flags(model_paths, tmp_path):
    """TMS testGoodModelConfig + testModelConfigReload: --model_config_file (with
    model_version_policy and version_labels), --model_config_file_poll_wait_seconds, then the file
    is rewritten to half_plus_three and served without a restart; --enable_batching with
    --batching_parameters_file (testdata/batching_config.txt's fields), --rest_api_timeout_in_ms."""
    config = tmp_path / "models.config"
    config.write_text(CONFIG.format(name="half_plus_two", path=model_paths / "half_plus_two"))
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
                        "max_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 8 }\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "serving", f"--port={port}", f"--rest_api_port={free_port()}",
                             f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1",
                             "--file_system_poll_wait_seconds=1", "--enable_batching=true",
                             f"--batching_parameters_file={batching}", "--rest_api_timeout_in_ms=5000"],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    target = f"127.0.0.1:{port}"
    try:
        assert _until(lambda: _predict(target, "half_plus_two")) == 3.0
        assert _predict(target, "half_plus_two", label="stable") == 3.0
        config.write_text(CONFIG.format(name="half_plus_three", path=model_paths / "half_plus_three"))
        assert _until(lambda: _predict(target, "half_plus_three"), seconds=30) == 4.0
        with pytest.raises(grpc.RpcError) as err:
            _predict(target, "half_plus_two")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        proc.terminate()
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out[-2000:]


def test_bad_model_config(tmp_path):
    """TMS testBadModelConfig: the error names the file and says 'Error parsing text-format
    tensorflow.serving.ModelServerConfig'; the process exits non-zero."""
    bad = tmp_path / "bad.config"
    bad.write_text("improperly formatted file")  # as testdata/bad_model_config.txt
    out = subprocess.run([sys.executable, "-m", "serving", f"--model_config_file={bad}"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in out.stderr and str(bad) in out.stderr
