"""Small clients for any TensorFlow Serving server (ours or the official one): gRPC with only the
tensorflow-serving-api protos (TensorProto <-> NumPy by serving/tensors.py, which reads and writes
what tf.make_tensor_proto / tf.make_ndarray do, faster), and REST (api_rest.md) with only the
standard library; nothing else from this project's server.

Both turn what goes wrong before a request reaches a model -- nothing listening, a host name
that does not resolve, the REST port given to the gRPC client or the other way round, a model
that is not served -- into `Unreachable` / `NotServed` with a one-line message, instead of a
gRPC or socket traceback; `TooLarge` says a request was over the server's size limits, so a
caller can send fewer rows at a time.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import urllib.parse
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import tensors
from serving.errors import Error


@dataclasses.dataclass
class Prediction:
    class_name: str
    class_id: int
    probabilities: list[float]
    model_version: int

    def top(self, k: int = 3, names: tuple[str, ...] | None = None) -> list[tuple[str, float]]:
        """The k most probable classes, named by `names` (by index when not given)."""
        names = names or tuple(str(i) for i in range(len(self.probabilities)))
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(names[i], float(self.probabilities[i])) for i in order]


class ClientError(Error):
    """A request the server did not answer as asked; the message is one line for the user."""


class Unreachable(ClientError):
    """No TensorFlow Serving API of the asked kind at that address."""


class NotServed(ClientError):
    """The server answers, but not for that model, version or signature."""


class TooLarge(ClientError):
    """The request was over a size limit of the server (gRPC message, tensor or body size)."""


def _rpc_error(error: grpc.RpcError, target: str) -> ClientError:
    code, details = error.code(), " ".join((error.details() or "").split())
    if code == grpc.StatusCode.UNAVAILABLE:
        low = details.lower()
        if any(w in low for w in ("dns", "resolv", "lookup", "name or service not known", "domain name not found")):
            return Unreachable(f"cannot resolve the host of {target} (wrong host name?)")
        if "connection refused" in low or "failed to connect" in low and "refused" in low:
            return Unreachable(f"nothing listens on {target} (connection refused; is the model server running?)")
        if "http1" in low or "http/1" in low or "protocol" in low or "frame" in low or "socket closed" in low:
            return Unreachable(f"{target} does not speak gRPC (is it the REST port? use --rest, or the gRPC port)")
        return Unreachable(f"model server at {target} unavailable: {details[:200]}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unreachable(f"no answer from {target} in time (wrong port, or the server is overloaded)")
    if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
        return NotServed(f"{target}: {details[:300]}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return TooLarge(details[:300])
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and ("http" in details.lower()
                                                                         or "protocol" in details.lower()):
        return Unreachable(f"{target} does not speak gRPC (is it the REST port? use --rest, or the gRPC port)")
    return ClientError(f"{code.name}: {details[:300]}")


class ServingClient:
    def __init__(self, target: str, model: str = "fmnist", timeout: float = 30.0,
                 root_certificates: bytes | None = None, max_message_bytes: int = 64 * 1024 * 1024) -> None:
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        self.channel = (grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates), options)
                        if root_certificates else grpc.insecure_channel(target, options))
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.model, self.timeout, self.target = model, timeout, target
        self.max_message_bytes = max_message_bytes

    def close(self) -> None:
        self.channel.close()

    def _spec(self, spec: Any, signature: str = "", version: int | None = None, label: str | None = None) -> None:
        spec.name = self.model
        if signature:
            spec.signature_name = signature
        if version is not None:
            spec.version.value = version
        if label:
            spec.version_label = label

    def predict_raw(self, inputs: dict[str, Any], signature: str = "", version: int | None = None,
                    label: str | None = None) -> predict_pb2.PredictResponse:
        import tensorflow as tf

        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature, version, label)
        for key, value in inputs.items():
            if type(value).__name__ == "TensorProto":
                request.inputs[key].CopyFrom(value)
            elif not tensors.fill_request_proto(request.inputs[key], value):  # NumPy fast path, else TF's
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        return self.predictions.Predict(request, timeout=self.timeout)

    def check_signature(self, signature: str, version: int | None = None) -> None:
        """Fails early, in one line, when the server is not there or does not serve `signature`."""
        try:
            signatures = self.metadata(version=version).signature_def
        except grpc.RpcError as e:
            raise _rpc_error(e, self.target) from None
        if signature not in signatures:
            raise NotServed(f"model {self.model!r} has no signature {signature!r} "
                            f"(it has {', '.join(sorted(signatures)) or 'none'})")

    def predict_images_checked(self, images: np.ndarray, version: int | None = None) -> list[Prediction]:
        """`predict_images` with failures as `ClientError`s (one line) instead of `grpc.RpcError`."""
        try:
            return self.predict_images(images, version=version)
        except grpc.RpcError as e:
            raise _rpc_error(e, self.target) from None

    def predict_images(self, images: np.ndarray, **kw: Any) -> list[Prediction]:
        """images: [N, 28, 28] grey values 0..255 (light garment on dark), float or uint8."""
        images = np.asarray(images)
        signature = "serving_images_uint8" if images.dtype == np.uint8 else "serving_images"
        response = self.predict_raw({"images": images if images.dtype == np.uint8 else images.astype(np.float32)},
                                    signature=signature, **kw)
        return self._predictions(response)

    def predict_examples(self, examples: list[bytes], **kw: Any) -> list[Prediction]:
        response = self.predict_raw({"examples": np.array(examples, dtype=object)}, **kw)
        return self._predictions(response)

    def classify(self, examples: list[Any], **kw: Any) -> classification_pb2.ClassificationResponse:
        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, **kw)
        request.input.example_list.examples.extend(examples)
        return self.predictions.Classify(request, timeout=self.timeout)

    def metadata(self, **kw: Any) -> get_model_metadata_pb2.SignatureDefMap:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, **kw)
        response = self.predictions.GetModelMetadata(request, timeout=self.timeout)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return sig_map

    def status(self, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, version=version)
        return self.models.GetModelStatus(request, timeout=self.timeout)

    def _predictions(self, response: predict_pb2.PredictResponse) -> list[Prediction]:
        """The answer's tensors as tf.make_ndarray reads them (typed fields or tensor_content),
        through serving/tensors.py's NumPy path: the same arrays at a fraction of the cost."""
        outputs, limit = response.outputs, self.max_message_bytes
        probs = tensors.to_array(outputs["probabilities"], limit, "probabilities")
        ids = tensors.to_array(outputs["class_id"], limit, "class_id")
        names = tensors.to_array(outputs["class_name"], limit, "class_name")
        version = response.model_spec.version.value
        return [Prediction(n.decode(), int(i), p.tolist(), version) for p, i, n in zip(probs, ids, names)]



class RestClient:
    """TF Serving's REST API (`/v1/models/<name>[/versions/<v>]:predict`, `/metadata`) over one
    keep-alive HTTP/1.1 connection; http.client, so nothing beyond the standard library."""

    def __init__(self, target: str, model: str = "fmnist", timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(target if "://" in target else f"http://{target}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise Unreachable(f"{target}: not a host:port or http(s):// URL")
        self.target, self.model, self.timeout = target, model, timeout
        self.host, self.port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
        cls = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        self.connection = cls(self.host, self.port, timeout=timeout)
        self.version = 0  # REST predictions do not name the version; the metadata call does

    def close(self) -> None:
        self.connection.close()

    def _path(self, version: int | None) -> str:
        path = f"/v1/models/{urllib.parse.quote(self.model, safe='')}"
        return path + (f"/versions/{version}" if version is not None else "")

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):  # a kept-alive connection the server has since closed is retried once
            try:
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.connection.close()
                if attempt == 2:
                    raise Unreachable(f"{self.target} closed the connection without an HTTP answer "
                                      f"(is it the gRPC port? leave out --rest, or use the REST port): {e}") from None
            except socket.gaierror:
                raise Unreachable(f"cannot resolve the host of {self.target} (wrong host name?)") from None
            except ConnectionRefusedError:
                raise Unreachable(f"nothing listens on {self.target} (connection refused; "
                                  "is the model server running?)") from None
            except (socket.timeout, TimeoutError):
                self.connection.close()
                raise Unreachable(f"no answer from {self.target} in {self.timeout:g} s") from None
            except (http.client.BadStatusLine, http.client.LineTooLong, http.client.HTTPException) as e:
                self.connection.close()
                raise Unreachable(f"{self.target} does not answer HTTP/1.1 (is it the gRPC port? leave out --rest, "
                                  f"or use the REST port): {type(e).__name__}") from None
            except OSError as e:
                self.connection.close()
                raise Unreachable(f"cannot talk to {self.target}: {e.strerror or e}") from None
        try:
            payload = json.loads(data) if data else {}
        except ValueError:
            payload = {"error": data[:200].decode("utf-8", "replace")}
        if response.status == 200:
            return payload
        message = " ".join(str(payload.get("error", payload) if isinstance(payload, dict) else payload).split())[:300]
        if response.status == 413:
            raise TooLarge(message or "request body too large")
        if response.status in (404,) or (response.status == 400 and "signature" in message.lower()):
            raise NotServed(f"{self.target}: {message}")
        raise ClientError(f"HTTP {response.status}: {message}")

    def check_signature(self, signature: str, version: int | None = None) -> None:
        meta = self._request("GET", self._path(version) + "/metadata")
        try:
            self.version = int(meta.get("model_spec", {}).get("version", 0))
        except (TypeError, ValueError):
            self.version = 0
        signatures = meta.get("metadata", {}).get("signature_def", {}).get("signature_def", {})
        if signature not in signatures:
            raise NotServed(f"model {self.model!r} has no signature {signature!r} "
                            f"(it has {', '.join(sorted(signatures)) or 'none'})")

    def predict_images_checked(self, images: np.ndarray, version: int | None = None) -> list[Prediction]:
        """images: [N, 28, 28] uint8 through `serving_images_uint8`, row format."""
        images = np.asarray(images, dtype=np.uint8)
        body = json.dumps({"signature_name": "serving_images_uint8", "instances": images.tolist()},
                          separators=(",", ":")).encode()
        answer = self._request("POST", self._path(version) + ":predict", body)
        rows = answer.get("predictions", [])
        if len(rows) != len(images):
            raise ClientError(f"{len(rows)} predictions for {len(images)} images")
        return [Prediction(r["class_name"], int(r["class_id"]), [float(p) for p in r["probabilities"]], self.version)
                for r in rows]
