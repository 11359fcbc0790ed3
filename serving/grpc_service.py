"""tensorflow.serving.PredictionService and ModelService over the tensorflow-serving-api protos.

Clients written for TensorFlow Serving work unchanged: same services, messages and status codes.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import grpc
import numpy as np
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

from serving import inference
from serving.batching import Batchers
from serving.model_manager import LoadedVersion, ModelManager, ModelNotFound

log = logging.getLogger(__name__)

_CODES: list[tuple[type, grpc.StatusCode]] = [
    (ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (inference.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (inference.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
]


def _guard(method: Callable) -> Callable:
    """Map our exceptions to gRPC status codes; anything else is INTERNAL, and logged."""
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as e:
            for kind, code in _CODES:
                if isinstance(e, kind):
                    context.abort(code, str(e).strip("'\""))
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    wrapper.__name__ = method.__name__
    return wrapper


def resolve(manager: ModelManager, spec: Any) -> LoadedVersion:
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label if spec.HasField("version_label") else None
    return manager.resolve(spec.name, version, label)


def to_numpy(proto: Any) -> np.ndarray:
    import tensorflow as tf
    try:
        return tf.make_ndarray(proto)
    except Exception as e:
        raise inference.InvalidArgument(f"cannot decode tensor: {e}") from None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, batchers: Batchers) -> None:
        self.manager, self.batchers = manager, batchers

    @_guard
    def Predict(self, request: predict_pb2.PredictRequest, context: Any) -> predict_pb2.PredictResponse:
        import tensorflow as tf

        model = resolve(self.manager, request.model_spec)
        sig_name, _ = inference.signature(model, request.model_spec.signature_name)
        feeds = inference.check_inputs(model, sig_name, {k: to_numpy(v) for k, v in request.inputs.items()})
        outputs = inference.run(model, sig_name, feeds, self.batchers)
        wanted = list(request.output_filter) or list(outputs)
        unknown = sorted(set(wanted) - set(outputs))
        if unknown:
            raise inference.InvalidArgument(f"output_filter names unknown outputs {unknown}")
        response = predict_pb2.PredictResponse()
        self._fill_spec(response.model_spec, model, sig_name)
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    @_guard
    def Classify(self, request: classification_pb2.ClassificationRequest, context: Any
                 ) -> classification_pb2.ClassificationResponse:
        from pipeline.features import CLASS_NAMES

        model = resolve(self.manager, request.model_spec)
        sig_name, _ = inference.signature(model, request.model_spec.signature_name)
        kind = request.input.WhichOneof("kind")
        if kind != "example_list":
            raise inference.InvalidArgument("Classify expects input.example_list")
        examples = np.array([e.SerializeToString() for e in request.input.example_list.examples], dtype=object)
        specs = model.inputs[sig_name]
        if len(specs) != 1:
            raise inference.InvalidArgument(f"signature '{sig_name}' is not a single-input signature")
        (key,) = specs
        feeds = inference.check_inputs(model, sig_name, {key: examples})
        outputs = inference.run(model, sig_name, feeds, self.batchers)
        if "probabilities" not in outputs:
            raise inference.InvalidArgument(f"signature '{sig_name}' has no 'probabilities' output")
        response = classification_pb2.ClassificationResponse()
        self._fill_spec(response.model_spec, model, sig_name)
        for row in outputs["probabilities"]:
            classifications = response.result.classifications.add()
            for name, score in zip(CLASS_NAMES, row):
                classifications.classes.add(label=name, score=float(score))
        return response

    @_guard
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: Any
                         ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        model = resolve(self.manager, request.model_spec)
        fields = list(request.metadata_field) or ["signature_def"]
        if fields != ["signature_def"]:
            raise inference.InvalidArgument(f"metadata_field must be ['signature_def'], got {fields}")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        self._fill_spec(response.model_spec, model, "")
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in model.signature_defs.items():
            sig_map.signature_def[name].CopyFrom(sig)
        response.metadata["signature_def"].Pack(sig_map)
        return response

    def Regress(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Regress is not supported by this model server")

    def MultiInference(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not supported by this model server")

    @staticmethod
    def _fill_spec(spec: Any, model: LoadedVersion, sig_name: str) -> None:
        spec.name = model.name
        spec.version.value = model.version
        if sig_name:
            spec.signature_name = sig_name


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    @_guard
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context: Any
                       ) -> get_model_status_pb2.GetModelStatusResponse:
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        if spec.HasField("version_label"):
            version = self.manager.resolve(spec.name, label=spec.version_label).version
        response = get_model_status_pb2.GetModelStatusResponse()
        for v, status in sorted(self.manager.status(spec.name, version).items()):
            entry = response.model_version_status.add(version=v, state=status.state)
            entry.status.error_code = 2 if status.error else 0  # tensorflow.error.UNKNOWN / OK
            entry.status.error_message = status.error
        return response

    def HandleReloadConfigRequest(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the model config is read at start-up; restart the server to change it")
