"""TF Serving's REST API (g3doc/api_rest.md) on aiohttp, an asynchronous HTTP server.

    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:(predict|classify|regress)
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>][/metadata]

Paths are matched with TF Serving's own regular expressions (http_rest_api_util.cc); anything
else is 400 "Malformed request". The event loop only moves bytes: JSON decoding, the model call
and encoding run in a bounded thread pool, so a slow request never stalls the others.

Limits TF Serving's REST front end has or a public server needs: a listen backlog, a cap on open
connections kept under the process's file-descriptor limit (at the cap a new connection takes the
place of the connection idle the longest; only when none is idle is it answered 503 and closed),
an idle timeout (aiohttp's keep-alive timer also runs before the first request), a timeout for
reading a body, a body
limit that holds for chunked bodies and whatever Content-Length claims (aiohttp counts the
bytes it actually reads; a negative or malformed Content-Length is a 400 from its parser), and
`--rest_api_timeout_in_ms` for the whole call. Client errors are answered with their status and
logged in one line, never with a traceback; repeated connection-level errors (failed accepts,
client resets) at most one line per interval with the count suppressed (serving/log_limits.py).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import resource
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from google.protobuf import json_format

from serving import inference, json_codec, tensors
from serving.batching import Batchers
from serving.errors import DeadlineExceeded, InvalidArgument, ServingError
from serving.grpc_service import model_metadata, model_status
from serving.log_limits import RateLimitedLog, suffix
from serving.metrics import NO_METRICS, OK, Metrics
from serving.model_manager import ModelManager, State
from serving.request_log import RequestLogs

log = logging.getLogger(__name__)

# tensorflow_serving/model_servers/http_rest_api_util.cc
PREDICTION_API = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                            r":(classify|regress|predict)", re.IGNORECASE)
MODEL_STATUS_API = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                              r"(?:/(metadata))?", re.IGNORECASE)
MAX_INT64 = 2**63 - 1
# Connections accepted per event-loop wake-up (asyncio accepts up to its `backlog` argument in one
# go): small, so connections closed to make room are closed before many more are opened, and a
# burst cannot run the process out of file descriptors between two loop steps. The kernel's listen
# backlog is set separately (RestServer.backlog).
ACCEPTS_PER_WAKEUP = 32
# File descriptors kept free for everything but REST connections (gRPC clients, model files, request
# logs, the accept batch above): the connection cap is lowered to fit the limit minus these.
FD_HEADROOM = 128
ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message (selector_events.py)

_limited = RateLimitedLog(log)


class _ClientErrorsInOneLine(logging.Filter):
    """aiohttp logs a malformed request or a reset connection with a full traceback; those are
    the client's doing, so they become one INFO line naming the error."""

    CLIENT_ERRORS = ("BadHttpMessage", "BadStatusLine", "LineTooLong", "InvalidHeader", "TransferEncodingError",
                     "ContentLengthError", "HttpProcessingError", "ConnectionResetError", "BrokenPipeError",
                     "ClientConnectionResetError", "CancelledError", "PayloadEncodingError")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            if any(cls.__name__ in self.CLIENT_ERRORS for cls in type(error).__mro__):
                suppressed = _limited.allow(f"client error {type(error).__name__}")
                if suppressed is None:
                    return False  # the same kind was logged moments ago; counted, said on its next line
                text = " ".join(str(error).split())[:300]
                record.msg = "rest client error: %s: %s" + suffix(suppressed, _limited.interval)
                record.args = (type(error).__name__, text)
                record.exc_info, record.exc_text = None, None
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_client_filter = _ClientErrorsInOneLine()


REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           b"Connection: close\r\nContent-Length: 47\r\n\r\n"
           b'{"error": "too many connections; retry later"}\n')
REFUSAL_LINGER_SECONDS = 2.0


class _Refuse(asyncio.Protocol):
    """Over the connection limit: a 503 with a body, then close, without parsing the request.

    The answer must reach the client whatever it sends: closing a socket whose receive buffer
    holds unread bytes makes the kernel send RST, and a client that already sent its request
    would then see "connection reset" instead of the 503. So the 503 is written, the write side
    shut (FIN after the answer), and what the client sends is read and dropped until it closes
    or REFUSAL_LINGER_SECONDS pass (a "lingering close", as Apache's lingering_close does).
    """

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        transport.write(REFUSAL)
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # dropped: the answer is the same whatever the request was

    def eof_received(self) -> bool:
        self._transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()


class _Counted(asyncio.Protocol):
    """aiohttp's handler for one connection, counted as open from the moment it is created.

    aiohttp's own list (`Server.connections`) only grows in the handler's `connection_made`,
    which asyncio calls a loop step after the protocol factory; when many connections are
    accepted in one batch (a burst, or a loop that was busy) every factory call of the batch ran
    before any of them was listed, so all were admitted over the cap -- and later closed by the
    idle timeout without the 503 (issue 32). Counting here, in the factory, closes that window.
    """

    def __init__(self, inner: asyncio.Protocol, server: "RestServer") -> None:
        self._inner, self._server = inner, server
        self.transport: Any = None
        self.evicted = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._server._connections[transport] = self
        self._server._idle[self] = None  # nothing asked yet: idle until the first bytes
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._server._idle.pop(self, None)  # a request is coming in: busy until it is answered
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connection_closed(self)
        self._inner.connection_lost(exc)


class RestServer:
    def __init__(self, manager: ModelManager, batchers: Batchers, host: str, port: int, *,
                 max_body_bytes: int = 64 * 1024 * 1024, max_tensor_bytes: int = 64 * 1024 * 1024,
                 timeout_ms: int = 30_000, max_connections: int = 512, idle_timeout: float = 30.0,
                 read_timeout: float = 30.0, backlog: int = 1024, workers: int = 16,
                 request_logs: RequestLogs | None = None, metrics: Metrics = NO_METRICS,
                 metrics_path: str | None = None) -> None:
        self.manager, self.batchers = manager, batchers
        self.metrics, self.metrics_path = metrics, metrics_path
        self.logs = request_logs or RequestLogs()
        self.max_body_bytes, self.max_tensor_bytes = max_body_bytes, max_tensor_bytes
        self.timeout = timeout_ms / 1000 if timeout_ms and timeout_ms > 0 else None
        self.max_connections, self.idle_timeout, self.read_timeout = max_connections, idle_timeout, read_timeout
        self.backlog = backlog
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rest")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rest", daemon=True)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        # Read and written on the loop thread only:
        self._open = 0  # admitted connections not yet closed (an evicted one stops counting at once)
        self._connections: dict[Any, _Counted] = {}  # transport -> its connection
        self._idle: collections.OrderedDict[_Counted, None] = collections.OrderedDict()  # longest idle first
        self.evicted = 0  # idle connections closed to admit a new one
        self.connection_cap = max_connections

    @property
    def open_connections(self) -> int:
        """Connections admitted under the cap and still open (refused ones are not counted)."""
        return self._open

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    def _connection_closed(self, conn: _Counted) -> None:
        self._idle.pop(conn, None)
        self._connections.pop(conn.transport, None)
        if not conn.evicted:
            self._open -= 1

    def _evict_idle(self) -> bool:
        """Close the connection idle the longest (fair admission at the cap); False when none is idle."""
        if not self._idle:
            return False
        conn, _ = self._idle.popitem(last=False)
        conn.evicted = True
        self._open -= 1
        self.evicted += 1
        conn.transport.close()
        return True

    def _request_done(self, transport: Any) -> None:
        """The connection's request is answered: idle again, the most recently used."""
        conn = self._connections.get(transport)
        if conn is not None and not conn.evicted and not transport.is_closing():
            self._idle[conn] = None
            self._idle.move_to_end(conn)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """asyncio's own errors: a failed accept (out of file descriptors) is logged at most once
        per interval with the count, and idle connections are closed to free descriptors; asyncio
        retries accepting after a second. Anything else goes to asyncio's default handler."""
        if context.get("message") == ACCEPT_FAILED:
            freed = sum(self._evict_idle() for _ in range(ACCEPTS_PER_WAKEUP))
            _limited.log("accept", logging.WARNING, "rest: accepting a connection failed (%s); %d idle "
                         "connection(s) closed to free file descriptors", context.get("exception"), freed)
            return
        loop.default_exception_handler(context)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        server_log = logging.getLogger("aiohttp.server")
        if _client_filter not in server_log.filters:
            server_log.addFilter(_client_filter)
        self.connection_cap = _fd_limited_cap(self.max_connections)
        self._loop.set_exception_handler(self._loop_exception)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    async def _start(self) -> None:
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     keepalive_timeout=self.idle_timeout)
        await self._runner.setup()
        handler_factory = self._runner.server

        def factory() -> asyncio.Protocol:
            if self._open >= self.connection_cap and not self._evict_idle():
                return _Refuse()  # every admitted connection is busy with a request
            self._open += 1
            return _Counted(handler_factory(), self)

        self._server = await self._loop.create_server(factory, sock=self._sock, backlog=ACCEPTS_PER_WAKEUP)
        self._sock.listen(self.backlog)  # the kernel's queue stays long; asyncio's batch stays short

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server:
                self._server.close()
            if self._runner:
                await self._runner.cleanup()
        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._pool.shutdown(wait=False, cancel_futures=True)

    # --- requests ------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        try:
            return await self._respond(request)
        finally:  # answered (or failed): the connection is idle again, the most recently used
            self._request_done(request.transport)

    async def _respond(self, request: web.Request) -> web.Response:
        path = request.raw_path.split("?", 1)[0]
        if path == self.metrics_path and request.method == "GET":
            # http_server.cc: the Prometheus page on the REST port, text format 0.0.4.
            page = await self._loop.run_in_executor(self._pool, self.metrics.render)
            return web.Response(text=page, content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"})
        body = b""
        try:
            if request.method == "POST":
                body = await asyncio.wait_for(request.read(), self.read_timeout)
            future = self._loop.run_in_executor(self._pool, self.process, request.method, path, body)
            status, payload = await asyncio.wait_for(future, self.timeout)
        except web.HTTPRequestEntityTooLarge:
            status, payload = self._client_error(request.method, path, 413,
                                                 f"request body over {self.max_body_bytes} bytes")
        except asyncio.TimeoutError:
            if request.method == "POST" and not body:
                status, payload = self._client_error(request.method, path, 408, "timed out reading the request body")
            else:
                error = DeadlineExceeded(f"Request timed out after {self.timeout * 1000:.0f} ms")
                status, payload = self._client_error(request.method, path, error.http_status, error.message)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # e.g. a body that ended early
            status, payload = self._client_error(request.method, path, 400, f"could not read the request: {e}")
        return web.Response(body=payload, status=status, content_type="application/json")

    def _client_error(self, method: str, path: str, status: int, message: str) -> tuple[int, bytes]:
        log.info("rest %s %s: %d %s", method, path[:200], status, message[:300])
        return status, json_codec.dumps({"error": message})

    def process(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        """(HTTP status, JSON body) for one request; runs in the worker pool. Predict, Classify
        and Regress calls are counted and timed by status, entrypoint "REST" (TF Serving's
        http_rest_api_handler.cc records the same metrics as its gRPC service)."""
        started, status = time.perf_counter(), OK
        try:
            return 200, json_codec.dumps(self._dispatch(method, path, body))
        except ServingError as e:
            status = e.code.name
            return self._client_error(method, path, e.http_status, e.message)
        except Exception as e:
            status = "INTERNAL"
            log.exception("REST %s %s failed", method, path[:200])
            return 500, json_codec.dumps({"error": f"{type(e).__name__}: {e}"})
        finally:
            m = PREDICTION_API.fullmatch(path) if method == "POST" and self.metrics is not NO_METRICS else None
            if m:
                self.metrics.request(urllib.parse.unquote(m.group(1)), m.group(4).capitalize(), "REST", status,
                                     time.perf_counter() - started)

    def _dispatch(self, method: str, path: str, body: bytes) -> Any:
        malformed = InvalidArgument(f"Malformed request: {method} {path[:200]}")
        if method == "POST":
            m = PREDICTION_API.fullmatch(path)
            if not m:
                raise malformed
            name, version, label = _model_info(m)
            verb = m.group(4).lower()
            doc = json_codec.parse_body(body)
            model = self.manager.resolve(name, version, label)
            if verb == "predict":
                sig = _rest_signature(model, doc.get("signature_name", ""))
                feeds, columnar = json_codec.predict_feeds(doc, sig)
                outputs = inference.predict(model, sig, feeds, [], self.batchers)
                self.logs.offer(model, sig.name, lambda: _predict_log(model, sig.name, feeds, outputs))
                return json_codec.predict_response(outputs, columnar)
            sig_name = doc.get("signature_name", "") or inference.DEFAULT_SIGNATURE
            if sig_name not in model.signatures:
                raise InvalidArgument(f"No signature was found with the name: {sig_name}")
            data = json_codec.examples_input(doc, verb)
            if verb == "classify":
                result = inference.classify(model, model.signatures[sig_name], data, self.batchers)
                self.logs.offer(model, sig_name, lambda: _examples_log(model, sig_name, data, result, "classify"))
                return json_codec.classification_json(result)
            result = inference.regress(model, model.signatures[sig_name], data, self.batchers)
            self.logs.offer(model, sig_name, lambda: _examples_log(model, sig_name, data, result, "regress"))
            return json_codec.regression_json(result)
        if method == "GET":
            m = MODEL_STATUS_API.fullmatch(path)
            if not m:
                raise malformed
            name, version, label = _model_info(m)
            if not name:
                raise InvalidArgument("Missing model name in request.")
            if m.group(4):
                metadata = model_metadata(self.manager.resolve(name, version, label), ["signature_def"])
                return _metadata_json(metadata)
            from tensorflow_serving.apis import model_pb2
            spec = model_pb2.ModelSpec(name=name)
            if version is not None:
                spec.version.value = version
            if label is not None:
                spec.version_label = label
            status = model_status(self.manager, spec, self.logs)
            return {"model_version_status": [
                {"version": str(s.version), "state": _state_name(s.state),
                 "status": {"error_code": "UNKNOWN" if s.status.error_code else "OK",
                            "error_message": s.status.error_message}}
                for s in status.model_version_status]}
        raise malformed


def _rest_signature(model: Any, name: str) -> Any:
    """REST predict's signature lookup: an unknown name is INVALID_ARGUMENT (400) with the text of
    TF Serving's REST path (http_rest_api_handler.cc -> json_tensor.cc FillPredictRequestFromJson's
    signature getter), unlike gRPC's FAILED_PRECONDITION from predict_util.cc."""
    name = name or inference.DEFAULT_SIGNATURE
    if name not in model.signatures:
        raise InvalidArgument(f'Serving signature name: "{name}" not found in signature def')
    return model.signatures[name]


def _state_name(state: int) -> str:
    """TF Serving's REST name of a ModelVersionStatus.State value."""
    return State.Name(state) if state in State.values() else "UNKNOWN"


def _predict_log(model: Any, sig_name: str, feeds: dict, outputs: dict) -> Any:
    """A REST predict call as the PredictionLog a gRPC client's call would give (request log)."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request, response = predict_pb2.PredictRequest(), predict_pb2.PredictResponse()
    inference.fill_spec(request.model_spec, model, sig_name)
    inference.fill_spec(response.model_spec, model, sig_name)
    for key, value in feeds.items():
        tensors.fill_proto(request.inputs[key], value)
    for key, value in outputs.items():
        tensors.fill_proto(response.outputs[key], value)
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request, response=response))


def _examples_log(model: Any, sig_name: str, data: Any, result: Any, verb: str) -> Any:
    from tensorflow_serving.apis import classification_pb2, prediction_log_pb2, regression_pb2

    if verb == "classify":
        request = classification_pb2.ClassificationRequest(input=data)
        response = classification_pb2.ClassificationResponse(result=result)
    else:
        request = regression_pb2.RegressionRequest(input=data)
        response = regression_pb2.RegressionResponse(result=result)
    inference.fill_spec(request.model_spec, model, sig_name)
    inference.fill_spec(response.model_spec, model, sig_name)
    if verb == "classify":
        return prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=request, response=response))
    return prediction_log_pb2.PredictionLog(
        regress_log=prediction_log_pb2.RegressLog(request=request, response=response))


def _model_info(m: re.Match) -> tuple[str, int | None, str | None]:
    name = urllib.parse.unquote(m.group(1)) if m.group(1) else ""
    version = None
    if m.group(2):
        version = int(m.group(2))
        if version > MAX_INT64:
            raise InvalidArgument(f"Failed to convert version: {m.group(2)} to numeric.")
    label = urllib.parse.unquote(m.group(3)) if m.group(3) else None
    return name, version, label


def _metadata_json(response: Any) -> dict:
    """GET .../metadata: the response with its Any unpacked, as TF Serving writes it."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    options = {"preserving_proto_field_name": True, "always_print_fields_with_no_presence": True}
    return {"model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {"signature_def": json_format.MessageToDict(sig_map, **options)}}


def _fd_limited_cap(max_connections: int) -> int:
    """The REST connection cap, lowered to fit the file-descriptor limit: the soft RLIMIT_NOFILE
    minus what is open now and FD_HEADROOM. Beyond it accepts would fail (EMFILE)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64
    cap = max(1, min(max_connections, soft - in_use - FD_HEADROOM))
    if cap < max_connections:
        log.warning("rest: connection cap %d lowered to %d to fit the file-descriptor limit %d (%d open)",
                    max_connections, cap, soft, in_use)
    return cap
