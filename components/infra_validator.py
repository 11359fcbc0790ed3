"""InfraValidator that runs the model server as a local process inside the step itself.

Why: TFX's stock InfraValidator runners start the server in Docker or in a Kubernetes pod spawned
from a KFP v1 pod (tensorflow/tfx #5512, #2912), so it runs neither on a laptop without Docker nor
on KFP v2 / Vertex. Starting the server as a child process of the step needs neither, and runs
the same everywhere: TensorFlow Serving's own `tensorflow_model_server` where it is on PATH (the
pipeline image copies it in, kubeflow/Dockerfile), otherwise this project's server
(`python -m serving`) with the very same command-line flags.

Everything else is the stock component: its spec and InfraBlessing artifact, the TF Serving model
layout it prepares, its retry loop, its gRPC client waiting for the model to be AVAILABLE and
sending the requests, and `make_warmup` writing the requests into the validated model
(`assets.extra/tf_serving_warmup_requests`), which the Pusher then pushes. What is added:

* requests built from the test split in the layout the client-facing signatures take (the stock
  request builder sends Examples-artifact records, which only the evaluation signature parses):
  gRPC Predict on `serving_default` and Classify on `classification`, and the answers are checked
  (probabilities in [0, 1] summing to 1, ten scored classes);
* a latency gate: a short bounded sequential load of single-image Predict calls whose p99 must stay
  under a threshold;
* the outcome on the InfraBlessing artifact: the server used, p50/p99, and which check failed.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from tfx import types, v1 as tfx
from tfx.components.infra_validator import error_types, executor as stock, serving_bins
from tfx.components.infra_validator.model_server_runners import base_runner
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as specs
from tfx.types.component_spec import ExecutionParameter

from components.errors import FmnistError
from schema.contract import (
    CLASSIFY_SIGNATURE,
    EXAMPLES_INPUT,
    NUM_CLASSES,
    PIXEL_KEYS,
    PREDICT_SIGNATURE,
    PROBABILITIES_OUTPUT,
    RAW_PIXELS_KEY,
    SERVING_THREAD_FLAGS,
    TEST_SPLIT,
)
from serving.ports import free_port

log = logging.getLogger(__name__)

TF_SERVING_BINARY = "tensorflow_model_server"
LATENCY_P99_KEY, LATENCY_REQUESTS_KEY = "latency_p99_ms", "latency_requests"


class CheckFailed(FmnistError):
    """One named check of the validation failed ("load", "query" or "latency")."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check


def server_command(model_name: str, model_base_path: str, port: int) -> tuple[list[str], str]:
    """TF Serving's command line; its own binary when installed, else this project's server."""
    flags = [f"--port={port}", "--rest_api_port=0", f"--model_name={model_name}",
             f"--model_base_path={model_base_path}", *SERVING_THREAD_FLAGS]  # as the model is served
    binary = shutil.which(TF_SERVING_BINARY)
    if binary:
        return [binary, *flags], TF_SERVING_BINARY
    # The pipeline image records how it was built (kubeflow/Dockerfile); say why the binary is absent.
    built_with = os.environ.get("FMNIST_TF_SERVING")
    log.info("%s not on PATH%s: validating with the project's server (python -m serving)", TF_SERVING_BINARY,
             f" (this image was built with TF_SERVING={built_with})" if built_with else "")
    return [sys.executable, "-m", "serving", *flags], "python -m serving"


class LocalProcessRunner(base_runner.BaseModelServerRunner):
    """The model server as a child process on 127.0.0.1 (what LocalDockerRunner is for Docker)."""

    def __init__(self, model_path: str, model_name: str) -> None:
        self._base_path = os.path.dirname(model_path)   # <base>/<model name>/<version>
        self._model_name = model_name
        self._port = free_port()
        self.command, self.server = server_command(model_name, self._base_path, self._port)
        self._process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile(mode="w+")

    def __repr__(self) -> str:
        return f"LocalProcessRunner({self.server}, port {self._port})"

    def GetEndpoint(self) -> str:
        return f"127.0.0.1:{self._port}"

    def Start(self) -> None:
        self._process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def WaitUntilRunning(self, deadline: float) -> None:
        while time.time() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise error_types.JobAborted(f"{self.server} exited ({self._process and self._process.returncode})")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self._port)) == 0:
                    return
            time.sleep(0.2)
        raise error_types.DeadlineExceeded(f"{self.server} did not listen on {self.GetEndpoint()} in time")

    def Stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def GetLogs(self) -> str | None:
        self._log.seek(0)
        return self._log.read()[-20000:] or None


def csv_layout_example(pixels: list[int]) -> Any:
    """A tf.Example as a TF Serving client builds it from a CSV row: pixel1..pixel784."""
    import tensorflow as tf

    return tf.train.Example(features=tf.train.Features(feature={
        key: tf.train.Feature(int64_list=tf.train.Int64List(value=[v])) for key, v in zip(PIXEL_KEYS, pixels)}))


def test_rows(examples: types.Artifact, split: str, count: int) -> list[list[int]]:
    """The first `count` images of a split of the Examples artifact, as pixel lists."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*")))
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(count):
        example = tf.train.Example.FromString(record.numpy())
        rows.append(list(example.features.feature[RAW_PIXELS_KEY].int64_list.value))
    if not rows:
        raise CheckFailed("query", f"no test examples in {examples.uri} split {split!r}")
    return rows


def build_requests(model_name: str, rows: list[list[int]]) -> list[Any]:
    """Predict on serving_default and Classify on classification, one of each per row."""
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, predict_pb2

    requests: list[Any] = []
    for pixels in rows:
        example = csv_layout_example(pixels)
        predict = predict_pb2.PredictRequest()
        predict.model_spec.name, predict.model_spec.signature_name = model_name, PREDICT_SIGNATURE
        predict.inputs[EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto([example.SerializeToString()]))
        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name, classify.model_spec.signature_name = model_name, CLASSIFY_SIGNATURE
        classify.input.example_list.examples.append(example)
        requests += [predict, classify]
    return requests


def check_answers(endpoint: str, requests: list[Any]) -> None:
    """Send every request and check that the answers decode and are in range."""
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc

    with grpc.insecure_channel(endpoint) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for request in requests:
            try:
                if isinstance(request, classification_pb2.ClassificationRequest):
                    classes = stub.Classify(request, timeout=30).result.classifications
                    scores = np.array([[c.score for c in row.classes] for row in classes])
                    if scores.shape != (1, NUM_CLASSES):
                        raise CheckFailed("query", f"Classify answered scores of shape {scores.shape}")
                else:
                    outputs = stub.Predict(request, timeout=30).outputs
                    if PROBABILITIES_OUTPUT not in outputs:
                        raise CheckFailed("query", f"Predict answered {sorted(outputs)}, no probabilities")
                    scores = tf.make_ndarray(outputs[PROBABILITIES_OUTPUT])
            except grpc.RpcError as e:
                raise CheckFailed("query", f"{type(request).__name__} on "
                                           f"{request.model_spec.signature_name!r}: {e.code().name} {e.details()}")
            if not (np.all(scores >= 0) and np.all(scores <= 1) and np.allclose(scores.sum(axis=1), 1, atol=1e-3)):
                raise CheckFailed("query", f"scores out of range on {request.model_spec.signature_name!r}: {scores}")


def measure_latency(endpoint: str, requests: list[Any], count: int) -> tuple[float, float]:
    """p50 and p99 in ms of `count` sequential single-image Predict calls (after 5 warm calls)."""
    import grpc
    import numpy as np
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    predicts = [r for r in requests if isinstance(r, predict_pb2.PredictRequest)]
    times = []
    with grpc.insecure_channel(endpoint) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i in range(count + 5):
            start = time.perf_counter()
            stub.Predict(predicts[i % len(predicts)], timeout=30)
            if i >= 5:
                times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


class Executor(stock.Executor):
    """Stock InfraValidator executor with a local-process server, answer checks and a latency gate."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        props = dict(exec_properties)
        self._p99_limit = float(props.pop(LATENCY_P99_KEY, None) or 0)
        self._latency_requests = int(props.pop(LATENCY_REQUESTS_KEY, None) or 200)
        self._outcome: dict[str, Any] = {}
        super().Do(input_dict, output_dict, props)
        blessing = output_dict[specs.BLESSING_KEY][0]
        for key, value in self._outcome.items():
            if isinstance(value, float):
                blessing.set_float_custom_property(key, value)
            else:
                blessing.set_string_custom_property(key, str(value))
        if self._outcome.get("failed_check"):
            log.error("model not servable: %s check failed: %s", self._outcome["failed_check"],
                      self._outcome.get("failure"))

    def _Do(self, model: types.Artifact, examples: types.Artifact | None, blessing: types.Artifact,
            serving_spec: Any, validation_spec: Any, request_spec: Any) -> None:
        rows = []
        if examples is not None and request_spec is not None:
            rows = test_rows(examples, request_spec.split_name or TEST_SPLIT, request_spec.num_examples or 10)
        requests = build_requests(serving_spec.model_name, rows)
        model_path = self._PrepareModelPath(model, serving_spec)
        binary = serving_bins.parse_serving_binaries(serving_spec)[0]
        if self._ValidateWithRetry(model_path=model_path, serving_binary=binary, serving_spec=serving_spec,
                                   validation_spec=validation_spec, requests=requests):
            self._outcome.pop("failed_check", None)
            self._outcome.pop("failure", None)
            stock._mark_blessed(blessing)
            if requests and request_spec.make_warmup:
                self._CreateWarmupModel(blessing, model_path, warmup_requests=requests)
        else:
            stock._mark_not_blessed(blessing)

    def _ValidateOnce(self, model_path: str, serving_binary: Any, serving_spec: Any,
                      validation_spec: Any, requests: list[Any]) -> None:
        runner = LocalProcessRunner(model_path, serving_spec.model_name)
        self._outcome.update(server=runner.server, server_command=" ".join(runner.command))
        deadline = time.time() + validation_spec.max_loading_time_seconds
        try:
            log.info("starting %r: %s", runner, " ".join(runner.command))
            try:
                runner.Start()
                runner.WaitUntilRunning(deadline)
                serving_binary.MakeClient(runner.GetEndpoint()).WaitUntilModelLoaded(
                    deadline, polling_interval_sec=1)
            except Exception as e:  # noqa: BLE001 -- any failure to come up is the "load" check
                raise CheckFailed("load", f"{runner.server} did not load the model: {e}") from e
            if requests:
                check_answers(runner.GetEndpoint(), requests)
                p50, p99 = measure_latency(runner.GetEndpoint(), requests, self._latency_requests)
                # 0 = no gate, recorded as 0: ML Metadata's SQLite store cannot hold an infinite double.
                self._outcome.update(latency_p50_ms=p50, latency_p99_ms=p99,
                                     latency_threshold_ms=self._p99_limit or 0.0)
                log.info("latency over %d single-image calls: p50 %.2f ms, p99 %.2f ms (limit %s)",
                         self._latency_requests, p50, p99, self._p99_limit or "none")
                if self._p99_limit and p99 > self._p99_limit:
                    raise CheckFailed("latency", f"p99 {p99:.2f} ms > threshold {self._p99_limit:g} ms "
                                                 f"over {self._latency_requests} single-image Predict calls")
        except CheckFailed as e:
            self._outcome.update(failed_check=e.check, failure=str(e))
            logs = runner.GetLogs()
            if logs:
                log.error("model server log:\n%s", logs[-5000:])
            raise
        finally:
            runner.Stop()


class _InfraValidatorSpec(specs.InfraValidatorSpec):
    PARAMETERS = {**specs.InfraValidatorSpec.PARAMETERS,
                  LATENCY_P99_KEY: ExecutionParameter(type=float, optional=True),
                  LATENCY_REQUESTS_KEY: ExecutionParameter(type=int, optional=True)}


class LocalInfraValidator(base_component.BaseComponent):
    """The stock InfraValidator's spec (inputs, InfraBlessing, make_warmup) and executor, with a
    local-process model server.

    A BaseComponent rather than a subclass of tfx.components.InfraValidator: TFX's Kubeflow v2
    compiler refuses every InfraValidator subclass outright (step_builder.py: "The component type
    ... is not supported"), because the stock runners need Docker or a KFP v1 pod.
    """
    SPEC_CLASS = _InfraValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, *, model: Any, examples: Any, model_name: str, split: str, num_examples: int,
                 latency_p99_ms: Any, latency_requests: int, num_tries: int = 2,
                 max_loading_time_seconds: int = 180) -> None:
        spec = _InfraValidatorSpec(
            model=model, examples=examples,
            serving_spec=tfx.proto.ServingSpec(
                tensorflow_serving=tfx.proto.TensorFlowServing(tags=["latest"]), model_name=model_name),
            validation_spec=tfx.proto.ValidationSpec(
                num_tries=num_tries, max_loading_time_seconds=max_loading_time_seconds),
            request_spec=tfx.proto.RequestSpec(
                tensorflow_serving=tfx.proto.TensorFlowServingRequestSpec(), split_name=split,
                num_examples=num_examples, make_warmup=True),
            latency_p99_ms=latency_p99_ms, latency_requests=latency_requests,
            blessing=types.Channel(type=standard_artifacts.InfraBlessing))
        base_component.BaseComponent.__init__(self, spec=spec)

