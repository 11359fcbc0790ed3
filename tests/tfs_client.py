"""Talking gRPC to a TensorFlow Serving server in the serving tests, the way a TF Serving client
does: tensorflow-serving-api stubs on one insecure channel to 127.0.0.1, closed when done, and the
request TF Serving's half_plus_two models (tests/tfs_models.py) answer with y = 0.5 * x + 2.

One place for what several test modules wrote each for themselves (stub on a channel, the
one-value `x` PredictRequest, a model's version status). Only upstream's protos: nothing of
this project's server, so the tests hold for any TF Serving-compatible server.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import grpc
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)


@contextlib.contextmanager
def prediction_stub(target: str) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    """PredictionService (Predict, Classify, Regress, MultiInference, GetModelMetadata) at `target`."""
    with grpc.insecure_channel(target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@contextlib.contextmanager
def model_stub(target: str) -> Iterator[model_service_pb2_grpc.ModelServiceStub]:
    """ModelService (GetModelStatus, HandleReloadConfigRequest) at `target`."""
    with grpc.insecure_channel(target) as channel:
        yield model_service_pb2_grpc.ModelServiceStub(channel)


def half_plus_two_request(name: str, x: float = 2.0, label: str | None = None) -> predict_pb2.PredictRequest:
    """Predict of one value `x` (float32, shape [1]) on model `name` (optionally by version label)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if label:
        request.model_spec.version_label = label
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(x)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    return request


def model_status(target: str, name: str, timeout: float = 30) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatus of every version of model `name`."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    with model_stub(target) as stub:
        return stub.GetModelStatus(request, timeout)
