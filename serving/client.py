"""A small client for any TensorFlow Serving server (ours or the official one): only the
tensorflow-serving-api protos and gRPC, nothing from this project's server."""
from __future__ import annotations

import dataclasses
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)


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


class ServingClient:
    def __init__(self, target: str, model: str = "fmnist", timeout: float = 30.0,
                 root_certificates: bytes | None = None, max_message_bytes: int = 64 * 1024 * 1024) -> None:
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        self.channel = (grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates), options)
                        if root_certificates else grpc.insecure_channel(target, options))
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.model, self.timeout = model, timeout

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
            is_proto = type(value).__name__ == "TensorProto"
            request.inputs[key].CopyFrom(value if is_proto else tf.make_tensor_proto(value))
        return self.predictions.Predict(request, timeout=self.timeout)

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

    @staticmethod
    def _predictions(response: predict_pb2.PredictResponse) -> list[Prediction]:
        import tensorflow as tf

        probs = tf.make_ndarray(response.outputs["probabilities"])
        ids = tf.make_ndarray(response.outputs["class_id"])
        names = tf.make_ndarray(response.outputs["class_name"])
        version = response.model_spec.version.value
        return [Prediction(n.decode(), int(i), p.tolist(), version) for p, i, n in zip(probs, ids, names)]

