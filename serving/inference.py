"""Predict, Classify, Regress and MultiInference on any SavedModel, as TF Serving runs them.

Shared by gRPC, REST and warm-up. Written from tensorflow_serving/servables/tensorflow/
`predict_util.cc`, `classifier.cc`, `regressor.cc`, `multi_inference.cc` and `util.cc`: the same
checks in the same order, with the same status codes and, where TF Serving's tests look at them,
the same messages. What the graph itself checks (shapes, dtypes, parse errors) is left to it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
from tensorflow_serving.apis import classification_pb2, inference_pb2, input_pb2, prediction_log_pb2, regression_pb2

from serving.batching import Batchers
from serving.errors import FailedPrecondition, InvalidArgument, Unimplemented
from serving.savedmodel import LoadedVersion, Signature, warmup_file

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit (saved_model_warmup_util.cc)


def signature(model: LoadedVersion, name: str) -> Signature:
    name = name or DEFAULT_SIGNATURE
    if name not in model.signatures:
        raise FailedPrecondition(f'Serving signature key "{name}" not found.')
    return model.signatures[name]


def _keys(keys: Any) -> str:
    return ",".join(sorted(keys))


def input_values(sig: Signature, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The signature's inputs from the request, a SignatureDef default for an alias the request
    leaves out: tensorflow/cc/saved_model/util.cc GetInputValues (which TF Serving's predict_util.cc
    RunPredict calls), with its checks in its order and its messages. Aliases are visited in sorted
    order (upstream walks a proto map, whose order is unspecified)."""
    values = {}
    for alias in sorted(sig.inputs):
        if alias in feeds:
            values[alias] = feeds[alias]
        elif alias in sig.defaults:
            values[alias] = sig.defaults[alias]
        else:
            raise InvalidArgument(
                f"Signature input alias: {alias}(feed name: {sig.inputs[alias].tensor_name}) not found in request "
                f"and no default value provided. Inputs expected to be in the request {{{_keys(feeds)}}}, "
                f"or default input alias set: {_keys(sig.defaults)}")
    used = [alias for alias in feeds if alias in sig.inputs]
    if feeds and len(used) != len(feeds):
        raise InvalidArgument(f"Inputs contains invalid name. Used request inputs: {_keys(used)}, "
                              f"request input: {_keys(feeds)}")
    return values


def predict(model: LoadedVersion, sig: Signature, feeds: dict[str, np.ndarray], output_filter: list[str],
            batchers: Batchers) -> dict[str, np.ndarray]:
    """{alias: array} for the filtered outputs (all outputs when the filter is empty)."""
    feeds = input_values(sig, feeds)
    outputs: list[str] = []
    for alias in output_filter:
        if alias not in sig.outputs:
            raise InvalidArgument(f"output tensor alias not found in signature: {alias} "
                                  f"Outputs expected to be in the set {{{_keys(sig.outputs)}}}.")
        if alias in outputs:
            raise InvalidArgument(f"duplicate output tensor alias: {alias}")
        outputs.append(alias)
    outputs = outputs or sorted(sig.outputs)
    return batchers.run((model.name, model.version, sig.name, tuple(outputs)),
                        lambda batch: model.run(sig, batch, outputs), feeds)


def serialized_examples(data: input_pb2.Input) -> np.ndarray:
    """The request's tf.Examples, serialized, as the string tensor classify/regress graphs parse.

    With `example_list_with_context`, each example gets the context's features it lacks.
    """
    kind = data.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in data.example_list.examples]
    elif kind == "example_list_with_context":
        context = data.example_list_with_context.context
        examples = []
        for e in data.example_list_with_context.examples:
            merged = type(e)()
            merged.CopyFrom(e)
            for key, feature in context.features.feature.items():
                if key not in merged.features.feature:
                    merged.features.feature[key].CopyFrom(feature)
            examples.append(merged.SerializeToString())
    else:
        raise InvalidArgument("Input is empty.")
    if not examples:
        raise InvalidArgument("Input is empty.")
    return np.array(examples, dtype=object)


def _one_input(sig: Signature, key: str, what: str) -> None:
    if len(sig.inputs) != 1:
        raise InvalidArgument("Expected one input Tensor.")
    if key not in sig.inputs:
        raise InvalidArgument(f"No {what} inputs found in SignatureDef: {sig.name}")


def classify(model: LoadedVersion, sig: Signature, data: input_pb2.Input, batchers: Batchers
             ) -> classification_pb2.ClassificationResult:
    _one_input(sig, "inputs", "classification")
    if len(sig.outputs) not in (1, 2):
        raise InvalidArgument(f"Expected one or two output Tensors, found {len(sig.outputs)}")
    wanted = [k for k in ("classes", "scores") if k in sig.outputs]
    if not wanted:
        raise InvalidArgument('Expected classification signature outputs to contain at least one of '
                              f'"classes" or "scores". Signature was: {sig.name}')
    examples = serialized_examples(data)
    out = batchers.run((model.name, model.version, sig.name, tuple(wanted)),
                       lambda batch: model.run(sig, batch, wanted), {"inputs": examples}, "Classify")
    n = len(examples)
    classes, scores = out.get("classes"), out.get("scores")
    for name, tensor, kind in (("classes", classes, "OS"), ("scores", scores, "f")):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise InvalidArgument(f"Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}")
        if tensor.dtype.kind not in kind or (name == "scores" and tensor.dtype != np.float32):
            raise InvalidArgument(f"Expected {name} Tensor of {'DT_STRING' if name == 'classes' else 'DT_FLOAT'}."
                                  f" Got: {tensor.dtype}")
        if tensor.shape[0] != n:
            raise InvalidArgument(f"Expected {name} output batch size of {n}. Got: {tensor.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise InvalidArgument("Tensors class and score should match in dim_size(1). "
                              f"Got {classes.shape[1]} vs. {scores.shape[1]}")
    num_classes = (classes if classes is not None else scores).shape[1]
    result = classification_pb2.ClassificationResult()
    for i in range(n):
        row = result.classifications.add()
        for c in range(num_classes):
            entry = row.classes.add()
            if classes is not None:
                entry.label = _text(classes[i, c])
            if scores is not None:
                entry.score = float(scores[i, c])
    return result


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def regress(model: LoadedVersion, sig: Signature, data: input_pb2.Input, batchers: Batchers
            ) -> regression_pb2.RegressionResult:
    _one_input(sig, "inputs", "regression")
    if len(sig.outputs) != 1:
        raise InvalidArgument("Expected one output Tensor.")
    if "outputs" not in sig.outputs:
        raise InvalidArgument(f"No regression outputs found in SignatureDef: {sig.name}")
    examples = serialized_examples(data)
    out = batchers.run((model.name, model.version, sig.name, ("outputs",)),
                       lambda batch: model.run(sig, batch, ["outputs"]), {"inputs": examples}, "Regress")["outputs"]
    n = len(examples)
    if not (out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)):
        raise InvalidArgument("Expected output Tensor shape to be either [batch_size] or "
                              f"[batch_size, 1] but got {list(out.shape)}")
    if out.dtype != np.float32:
        raise InvalidArgument(f"Expected output Tensor of DT_FLOAT.  Got: {out.dtype}")
    if out.shape[0] != n:
        raise InvalidArgument(f"Expected output batch size to be {n}.  Got: {out.shape[0]}")
    result = regression_pb2.RegressionResult()
    for value in out.reshape(-1):
        result.regressions.add(value=float(value))
    return result


def multi_inference(resolve: Callable[[Any], LoadedVersion], request: inference_pb2.MultiInferenceRequest,
                    batchers: Batchers) -> inference_pb2.MultiInferenceResponse:
    """Several classify/regress tasks of one model on one input (multi_inference.cc's checks)."""
    if not request.tasks:
        raise InvalidArgument("MultiInferenceRequest must contain at least one task.")
    name = request.tasks[0].model_spec.name
    seen: set[str] = set()
    for task in request.tasks:
        if not task.model_spec.name:
            raise InvalidArgument("Found ModelSpec with an empty model name.")
        if task.model_spec.name != name:
            raise InvalidArgument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        sig_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if sig_name in seen:
            raise InvalidArgument(f"Duplicate evaluation of signature: {sig_name}")
        seen.add(sig_name)
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise Unimplemented(f"Unsupported signature method_name: {task.method_name}")
    model = resolve(request.tasks[0].model_spec)
    response = inference_pb2.MultiInferenceResponse()
    for task in request.tasks:
        sig_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if sig_name not in model.signatures:
            raise InvalidArgument(f"Requested signature not found in model graph: {sig_name}")
        sig = model.signatures[sig_name]
        result = response.results.add()
        fill_spec(result.model_spec, model, sig_name)
        if task.method_name == CLASSIFY_METHOD:
            result.classification_result.CopyFrom(classify(model, sig, request.input, batchers))
        else:
            result.regression_result.CopyFrom(regress(model, sig, request.input, batchers))
    return response


def fill_spec(spec: Any, model: LoadedVersion, sig_name: str | None) -> None:
    spec.name = model.name
    spec.version.value = model.version
    if sig_name is not None:
        spec.signature_name = sig_name


def warm_up(model: LoadedVersion, batchers: Batchers, max_tensor_bytes: int) -> int:
    """Replay assets.extra/tf_serving_warmup_requests (PredictionLog TFRecords); the count replayed.

    Only this file, as TF Serving does: no synthetic inputs, so stateful models are not touched
    and nothing about the model's features has to be known. Any failing record fails the load.
    """
    import os

    import tensorflow as tf

    from serving import tensors

    path = warmup_file(model.path)
    if not os.path.exists(path):
        return 0
    count = 0
    for record in tf.compat.v1.io.tf_record_iterator(path):
        count += 1
        if count > MAX_WARMUP_RECORDS:
            raise InvalidArgument(f"{path}: more than {MAX_WARMUP_RECORDS} warm-up records")
        entry = prediction_log_pb2.PredictionLog.FromString(record)
        kind = entry.WhichOneof("log_type")
        if kind == "predict_log":
            req = entry.predict_log.request
            feeds = {k: tensors.to_array(v, max_tensor_bytes, k) for k, v in req.inputs.items()}
            predict(model, signature(model, req.model_spec.signature_name), feeds, list(req.output_filter),
                    batchers)
        elif kind == "classify_log":
            req = entry.classify_log.request
            classify(model, signature(model, req.model_spec.signature_name), req.input, batchers)
        elif kind == "regress_log":
            req = entry.regress_log.request
            regress(model, signature(model, req.model_spec.signature_name), req.input, batchers)
        elif kind == "multi_inference_log":
            req = entry.multi_inference_log.request
            multi_inference(lambda _spec: model, req, batchers)
        else:
            raise InvalidArgument(f"{path}: record {count} has unsupported log type {kind}")
    return count
