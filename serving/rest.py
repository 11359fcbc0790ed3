"""TF Serving's REST API on its own port: `POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict`
and `GET /v1/models/<name>[/versions/<v>]`, with TF Serving's JSON conventions (row `instances` or
columnar `inputs`, `{"b64": ...}` for binary strings, errors as `{"error": ...}`).
"""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from serving import inference
from serving.batching import Batchers
from serving.model_manager import ModelManager, ModelNotFound

log = logging.getLogger(__name__)

PATH_RE = re.compile(r"^/v1/models/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)"
                     r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[A-Za-z0-9_.-]+))?"
                     r"(?P<verb>:predict)?$")
STATE_NAMES = {10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}
MAX_BODY = 64 * 1024 * 1024


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _array(value: Any, want_string: bool) -> np.ndarray:
    if want_string:
        return np.array(_decode(value), dtype=object)
    array = np.array(value)
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    raise inference.InvalidArgument(f"cannot use JSON values of type {array.dtype} as a tensor")


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    array = np.asarray(value)
    if array.dtype.kind in "OS":
        return [_jsonable(a) for a in array] if array.ndim else _jsonable(array.item())
    return array.tolist()


def make_handler(manager: ModelManager, batchers: Batchers) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("rest: " + fmt, *args)

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> re.Match | None:
            m = PATH_RE.match(self.path.split("?")[0])
            if not m:
                self._send(404, {"error": f"Malformed request: {self.command} {self.path[:200]}"})
            return m

        def do_GET(self) -> None:
            m = self._route()
            if not m:
                return
            if m["verb"]:
                return self._send(405, {"error": "use POST for :predict"})
            try:
                version = int(m["version"]) if m["version"] else None
                statuses = manager.status(m["name"], version)
            except ModelNotFound as e:
                return self._send(404, {"error": str(e).strip("'\"")})
            self._send(200, {"model_version_status": [
                {"version": str(v), "state": STATE_NAMES.get(s.state, "UNKNOWN"),
                 "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error}}
                for v, s in sorted(statuses.items())]})

        def do_POST(self) -> None:
            m = self._route()
            if not m:
                return
            if not m["verb"]:
                return self._send(405, {"error": "POST needs the :predict verb"})
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                return self._send(400, {"error": "bad Content-Length"})
            if length > MAX_BODY:
                self.close_connection = True
                return self._send(413, {"error": f"request body over {MAX_BODY} bytes"})
            try:
                body = json.loads(self.rfile.read(length) or b"null")
                self._send(200, self._predict(m, body))
            except ModelNotFound as e:
                self._send(404, {"error": str(e).strip("'\"")})
            except inference.ResourceExhausted as e:
                self._send(413, {"error": str(e)})
            except (inference.InvalidArgument, ValueError, TypeError, KeyError) as e:
                self._send(400, {"error": f"{e}"})
            except Exception as e:
                log.exception("REST predict failed")
                self._send(500, {"error": f"{type(e).__name__}: {e}"})

        def _predict(self, m: re.Match, body: Any) -> dict:
            import tensorflow as tf

            if not isinstance(body, dict):
                raise inference.InvalidArgument("the body must be a JSON object with 'instances' or 'inputs'")
            model = manager.resolve(m["name"], int(m["version"]) if m["version"] else None, m["label"])
            sig_name, _ = inference.signature(model, body.get("signature_name", ""))
            specs = model.inputs[sig_name]
            if "instances" in body:
                rows = body["instances"]
                if not isinstance(rows, list):
                    raise inference.InvalidArgument("'instances' must be a list")
                if rows and isinstance(rows[0], dict) and not set(rows[0]) == {"b64"}:
                    raw = {k: [r[k] for r in rows] for k in specs if all(k in r for r in rows)}
                elif len(specs) == 1:
                    raw = {next(iter(specs)): rows}
                else:
                    raise inference.InvalidArgument(f"instances must be objects with keys {sorted(specs)}")
                columnar = False
            elif "inputs" in body:
                raw = body["inputs"] if isinstance(body["inputs"], dict) else {next(iter(specs)): body["inputs"]}
                columnar = True
            else:
                raise inference.InvalidArgument("the body needs 'instances' or 'inputs'")
            feeds = {k: _array(v, specs[k].dtype == tf.string) if k in specs else np.array(v)
                     for k, v in raw.items()}
            feeds = inference.check_inputs(model, sig_name, feeds)
            outputs = inference.run(model, sig_name, feeds, batchers)
            if columnar:
                return {"outputs": {k: _jsonable(v) for k, v in outputs.items()}}
            n = len(next(iter(outputs.values())))
            return {"predictions": [{k: _jsonable(v[i]) for k, v in outputs.items()} for i in range(n)]}

    return Handler


class RestServer:
    def __init__(self, manager: ModelManager, batchers: Batchers, host: str, port: int) -> None:
        self.httpd = ThreadingHTTPServer((host, port), make_handler(manager, batchers))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="rest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
