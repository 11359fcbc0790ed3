"""tensorflow.serving.PredictionService and ModelService over the tensorflow-serving-api protos.

Clients written for TensorFlow Serving work unchanged: same services, messages, status codes and,
where TF Serving's tests check them, messages. Model-specific knowledge: none.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2 as plog,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving import inference, tensors
from serving.batching import Batchers
from serving.errors import InvalidArgument, ServingError
from serving.metrics import NO_METRICS, OK, Metrics
from serving.model_manager import AVAILABLE, ModelManager
from serving.request_log import RequestLogs
from serving.savedmodel import LoadedVersion

log = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"
# The calls TF Serving's prediction_service_impl.cc counts (RecordRequestLatency's `api` label).
MEASURED_APIS = ("Predict", "Classify", "Regress")


def _guard(method: Callable) -> Callable:
    """ServingErrors become their status with one log line; anything else is INTERNAL, logged in full.
    Predict, Classify and Regress are counted and timed by status (the service's `metrics`)."""
    measured = method.__name__ in MEASURED_APIS

    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        started, status = time.perf_counter(), OK
        try:
            return method(self, request, context)
        except ServingError as e:
            status = e.code.name
            log.info("grpc %s: %s %s", method.__name__, e.code.name, e.message[:300])
            context.abort(e.code, e.message)
        except Exception as e:
            status = grpc.StatusCode.INTERNAL.name
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
        finally:
            if measured:
                self.metrics.request(request.model_spec.name, method.__name__, "GRPC", status,
                                     time.perf_counter() - started)
    wrapper.__name__ = method.__name__
    return wrapper


def resolve(manager: ModelManager, request: Any) -> LoadedVersion:
    """The version a request's ModelSpec names; a request without one is INVALID_ARGUMENT."""
    if not request.HasField("model_spec") or not request.model_spec.name:
        raise InvalidArgument("Missing ModelSpec")
    return resolve_spec(manager, request.model_spec)


def resolve_spec(manager: ModelManager, spec: Any) -> LoadedVersion:
    choice = spec.WhichOneof("version_choice")
    return manager.resolve(spec.name, spec.version.value if choice == "version" else None,
                           spec.version_label if choice == "version_label" else None)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Successful calls are offered to the request logs (sampled there, written off the request
    thread: the closures only reference the request and response protos, neither is changed after)."""

    def __init__(self, manager: ModelManager, batchers: Batchers, max_tensor_bytes: int,
                 request_logs: RequestLogs | None = None, metrics: Metrics = NO_METRICS) -> None:
        self.manager, self.batchers, self.max_tensor_bytes = manager, batchers, max_tensor_bytes
        self.metrics = metrics
        self.logs = request_logs or RequestLogs()

    @_guard
    def Predict(self, request: predict_pb2.PredictRequest, context: Any) -> predict_pb2.PredictResponse:
        model = resolve(self.manager, request)
        sig = inference.signature(model, request.model_spec.signature_name)
        feeds = {k: tensors.to_array(v, self.max_tensor_bytes, k) for k, v in request.inputs.items()}
        outputs = inference.predict(model, sig, feeds, list(request.output_filter), self.batchers)
        response = predict_pb2.PredictResponse()
        inference.fill_spec(response.model_spec, model, sig.name)
        for key, value in outputs.items():
            tensors.fill_proto(response.outputs[key], value)
        self.logs.offer(model, sig.name, lambda: plog.PredictionLog(
            predict_log=plog.PredictLog(request=request, response=response)))
        return response

    @_guard
    def Classify(self, request: classification_pb2.ClassificationRequest, context: Any
                 ) -> classification_pb2.ClassificationResponse:
        return self._run_on_examples(request, classification_pb2.ClassificationResponse(), inference.classify,
                                     "classify_log", plog.ClassifyLog)

    @_guard
    def Regress(self, request: regression_pb2.RegressionRequest, context: Any) -> regression_pb2.RegressionResponse:
        return self._run_on_examples(request, regression_pb2.RegressionResponse(), inference.regress,
                                     "regress_log", plog.RegressLog)

    def _run_on_examples(self, request: Any, response: Any, run: Callable, log_field: str, log_type: type) -> Any:
        """Classify and Regress: the same steps around their inference call, logged under their own
        PredictionLog field (`log_field` holding a `log_type`)."""
        model = resolve(self.manager, request)
        sig = self._signature(model, request.model_spec.signature_name)
        response.result.CopyFrom(run(model, sig, request.input, self.batchers))
        inference.fill_spec(response.model_spec, model, sig.name)
        self.logs.offer(model, sig.name, lambda: plog.PredictionLog(
            **{log_field: log_type(request=request, response=response)}))
        return response

    @_guard
    def MultiInference(self, request: inference_pb2.MultiInferenceRequest, context: Any
                       ) -> inference_pb2.MultiInferenceResponse:
        models: list[LoadedVersion] = []

        def resolve_task(spec: Any) -> LoadedVersion:
            models.append(resolve_spec(self.manager, spec))
            return models[-1]

        response = inference.multi_inference(resolve_task, request, self.batchers)
        if models:
            self.logs.offer(models[0], "", lambda: plog.PredictionLog(
                multi_inference_log=plog.MultiInferenceLog(request=request, response=response)))
        return response

    @_guard
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: Any
                         ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        model = resolve(self.manager, request)
        return model_metadata(model, list(request.metadata_field))

    @staticmethod
    def _signature(model: LoadedVersion, name: str) -> Any:
        """Classify/Regress: an unknown signature is INVALID_ARGUMENT there (classifier.cc)."""
        name = name or inference.DEFAULT_SIGNATURE
        if name not in model.signatures:
            raise InvalidArgument(f"No signature was found with the name: {name}")
        return model.signatures[name]


def model_metadata(model: LoadedVersion, fields: list[str]) -> get_model_metadata_pb2.GetModelMetadataResponse:
    if not fields:
        raise InvalidArgument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            # get_model_metadata_impl.cc ValidateGetModelMetadataRequest:
            # errors::InvalidArgument("Metadata field %s is not supported", field) -- errors::
            # InvalidArgument concatenates its arguments (StrCat), so TF Serving's text keeps the
            # literal "%s" and the field name follows "supported".
            raise InvalidArgument(f"Metadata field %s is not supported{field}")
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    inference.fill_spec(response.model_spec, model, None)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for name, sig in model.signature_defs.items():
        sig_map.signature_def[name].CopyFrom(sig)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(sig_map)
    return response


def model_status(manager: ModelManager, spec: Any, request_logs: RequestLogs | None = None
                 ) -> get_model_status_pb2.GetModelStatusResponse:
    """The versions' states; a logged model's AVAILABLE versions also carry their request-log
    counts (written, dropped) in the status message, with error code OK."""
    if not spec.name:
        raise InvalidArgument("Missing ModelSpec")
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    if choice == "version_label":
        version = manager.label_version(spec.name, spec.version_label)
    response = get_model_status_pb2.GetModelStatusResponse()
    for v, status in sorted(manager.status(spec.name, version).items()):
        entry = response.model_version_status.add(version=v, state=status.state)
        entry.status.error_code = 2 if status.error else 0  # tensorflow.error.UNKNOWN / OK
        entry.status.error_message = status.error or (
            request_logs.describe(spec.name, v) if request_logs and status.state == AVAILABLE else "")
    return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, reload_config: Callable[[Any], None],
                 request_logs: RequestLogs | None = None) -> None:
        self.manager, self.reload_config, self.request_logs = manager, reload_config, request_logs

    @_guard
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context: Any
                       ) -> get_model_status_pb2.GetModelStatusResponse:
        if not request.HasField("model_spec"):
            raise InvalidArgument("Missing ModelSpec")
        return model_status(self.manager, request.model_spec, self.request_logs)

    @_guard
    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest, context: Any
                                  ) -> model_management_pb2.ReloadConfigResponse:
        """Load the given ModelServerConfig; new models are AVAILABLE (or failed) when this answers.
        Anything but a model_config_list (no config at all, custom_model_config) is
        INVALID_ARGUMENT with model_service_impl.cc's text."""
        if request.config.WhichOneof("config") != "model_config_list":
            raise InvalidArgument("ServerModelConfig type not supported by HandleReloadConfigRequest. "
                                  "Only ModelConfigList is currently supported")
        self.reload_config(request.config)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response
