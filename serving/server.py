"""The model server: gRPC (PredictionService, ModelService, health) plus REST, on loopback by default.

`ModelServer` is used in-process by tests, the demo and benchmarks; `serve_until_signalled` is
what `fmnist serve` runs: SIGTERM/SIGINT stop new requests, let in-flight ones finish (grace
period), then exit.
"""
from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.batching import Batchers, BatchingParameters
from serving.grpc_service import ModelService, PredictionService
from serving.model_manager import ModelConfig, ModelManager
from serving.rest import RestServer

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class ModelServer:
    def __init__(self, models: list[ModelConfig], *, host: str = "127.0.0.1", port: int = 8500,
                 rest_port: int | None = 8501, batching: BatchingParameters | None = None,
                 poll_seconds: float = 2.0, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 workers: int = 16, tls: tuple[bytes, bytes] | None = None) -> None:
        self.manager = ModelManager(models, poll_seconds)
        self.batchers = Batchers(batching)
        self.host, self.max_message_bytes = host, max_message_bytes
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self.manager, self.batchers), self.grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.manager), self.grpc)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        address = f"{host}:{port}"
        if tls:
            key, cert = tls
            self.port = self.grpc.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
        else:
            self.port = self.grpc.add_insecure_port(address)
        self.rest = RestServer(self.manager, self.batchers, host, rest_port) if rest_port is not None else None
        self.rest_port = self.rest.port if self.rest else None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "ModelServer":
        self.manager.start()  # loads and warms what is on disk before the port answers
        self.grpc.start()
        if self.rest:
            self.rest.start()
        status = health_pb2.HealthCheckResponse.SERVING
        self.health.set("", status)
        self.health.set("tensorflow.serving.PredictionService", status)
        log.info("serving %s on grpc %s, rest %s", {n: self.manager.available(n) for n in self.manager.models},
                 self.target, self.rest_port)
        return self

    def stop(self, grace: float = 30.0) -> None:
        self.health.enter_graceful_shutdown()
        self.grpc.stop(grace).wait()
        if self.rest:
            self.rest.stop()
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
    server.start()
    print(f"serving on {server.target} (gRPC), REST on {server.host}:{server.rest_port}; Ctrl-C to stop",
          flush=True)
    done.wait()
    server.stop(grace)
    return 0
