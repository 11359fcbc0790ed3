"""The model server: gRPC (PredictionService, ModelService, health) plus REST, on loopback by default.

`ModelServer` is used in-process by tests, the demo and benchmarks; `serve_until_signalled` is
what `fmnist serve` runs: SIGTERM/SIGINT stop new requests, let in-flight ones finish (grace
period), then exit; SIGUSR1 writes every thread's stack to stderr and goes on serving.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import inference
from serving.batching import Batchers, BatchingParameters
from serving.errors import InvalidArgument
from serving.grpc_service import ModelService, PredictionService
from serving.metrics import NO_METRICS, Metrics
from serving.model_manager import ModelConfig, ModelManager
from serving.request_log import LoggerLimits, RequestLogs
from serving.rest import RestServer

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_TENSOR_BYTES = 64 * 1024 * 1024


class ModelServer:
    def __init__(self, models: list[ModelConfig], *, host: str = "127.0.0.1", port: int = 8500,
                 rest_port: int | None = 8501, batching: BatchingParameters | None = None,
                 poll_seconds: float = 2.0, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES, max_body_bytes: int = 64 * 1024 * 1024,
                 rest_timeout_ms: int = 30_000, rest_max_connections: int = 512,
                 rest_idle_timeout: float = 30.0, workers: int = 16, tls: tuple[bytes, bytes] | None = None,
                 keep_served_signatures: bool = True, model_config_file: str | None = None,
                 config_poll_seconds: float = 0.0, request_log_limits: LoggerLimits | None = None,
                 session_config: Any = None, metrics_path: str | None = None) -> None:
        # --monitoring_config_file: metrics are recorded only when they are exposed somewhere.
        self.metrics = Metrics() if metrics_path and rest_port is not None else NO_METRICS
        self.batchers = Batchers(batching, self.metrics)
        self.request_logs = RequestLogs(request_log_limits)
        self.metrics.add_collector(self.request_logs.collect)
        self.max_tensor_bytes = max_tensor_bytes
        self.manager = ModelManager(
            models, poll_seconds, keep_served_signatures=keep_served_signatures, session_config=session_config,
            metrics=self.metrics, warm_up=lambda model: inference.warm_up(model, self.batchers, max_tensor_bytes))
        self.host, self.max_message_bytes = host, max_message_bytes
        self.model_config_file, self.config_poll_seconds = model_config_file, config_poll_seconds
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self.manager, self.batchers, max_tensor_bytes, self.request_logs, self.metrics),
            self.grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelService(self.manager, self.reload_config, self.request_logs), self.grpc)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        address = f"{host}:{port}"
        if tls:
            key, cert = tls
            self.port = self.grpc.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
        else:
            self.port = self.grpc.add_insecure_port(address)
        self.rest = RestServer(self.manager, self.batchers, host, rest_port, max_body_bytes=max_body_bytes,
                               max_tensor_bytes=max_tensor_bytes, timeout_ms=rest_timeout_ms,
                               max_connections=rest_max_connections, idle_timeout=rest_idle_timeout,
                               workers=workers, request_logs=self.request_logs, metrics=self.metrics,
                               metrics_path=metrics_path) if rest_port is not None else None
        self.rest_port = self.rest.port if self.rest else None
        self._stop = threading.Event()
        self._config_thread: threading.Thread | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def reload_config(self, config: Any) -> None:
        """Serve the models of a ModelServerConfig proto (HandleReloadConfigRequest)."""
        from serving.config import ConfigError, models_from_config_proto
        try:
            models = models_from_config_proto(config)
            self.apply_models(models)
        except (ConfigError, ValueError) as e:
            raise InvalidArgument(str(e)) from None

    def apply_models(self, models: list[ModelConfig]) -> None:
        """Serve a new model list: versions and labels (ModelManager.reload), then request logs."""
        self.manager.reload(models)
        self.request_logs.configure(models)

    def _watch_config_file(self) -> None:
        """--model_config_file_poll_wait_seconds: re-read the file; applied when it differs from
        the config in force (as TF Serving's ReloadConfig, a config equal to the current one is a
        no-op). Compared with what is served, not with the file's last text: a config applied by
        HandleReloadConfigRequest in between must not hide the file going back to an earlier text."""
        from serving.config import read_model_config_file
        failed_text: str | None = None
        while not self._stop.wait(self.config_poll_seconds):
            text = None
            try:
                with open(self.model_config_file) as f:
                    text = f.read()
                if text == failed_text:
                    continue  # reported once; wait for the next edit
                models = read_model_config_file(self.model_config_file)
                if {m.name: m for m in models} == dict(self.manager.models):
                    continue
                self.apply_models(models)
                log.info("model config %s reloaded", self.model_config_file)
            except Exception as e:  # a bad edit must not stop the server; the old config stays
                failed_text = text
                log.error("model config %s not applied: %s", self.model_config_file, e)

    def start(self) -> "ModelServer":
        self.manager.start()  # loads and warms what is on disk before the port answers
        self.request_logs.configure(list(self.manager.models.values()))
        self.grpc.start()
        if self.rest:
            self.rest.start()
        if self.model_config_file and self.config_poll_seconds > 0:
            self._config_thread = threading.Thread(target=self._watch_config_file, name="config-poller",
                                                   daemon=True)
            self._config_thread.start()
        status = health_pb2.HealthCheckResponse.SERVING
        self.health.set("", status)
        self.health.set("tensorflow.serving.PredictionService", status)
        log.info("serving %s on grpc %s, rest %s", {n: self.manager.available(n) for n in self.manager.models},
                 self.target, self.rest_port)
        return self

    def stop(self, grace: float = 30.0) -> None:
        self._stop.set()
        self.health.enter_graceful_shutdown()
        self.grpc.stop(grace).wait()
        if self.rest:
            self.rest.stop()
        self.request_logs.close()  # after the last request: everything queued is written
        self.manager.stop()
        self.batchers.close()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=5)


def serve_until_signalled(server: ModelServer, grace: float = 30.0) -> int:
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: draining in-flight requests (up to %.0f s), then exiting", signum, grace)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # `kill -USR1 <pid>`: where each thread is, for a server that does not answer or does not stop
    # (a drain once outlived its test's 300 s and left nothing to read; not reproduced since).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    server.start()
    print(f"serving on {server.target} (gRPC), REST on {server.host}:{server.rest_port}; Ctrl-C to stop "
          f"(pid {os.getpid()})", flush=True)
    done.wait()
    server.stop(grace)
    return 0
