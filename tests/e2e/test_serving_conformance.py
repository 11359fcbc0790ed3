"""Conformance with TensorFlow Serving, one case per expectation, each naming its upstream source.

Sources (tensorflow/serving): TMS = tensorflow_serving/model_servers/tensorflow_model_server_test.py,
HANDLER = tensorflow_serving/model_servers/http_rest_api_handler_test.cc,
JSON = tensorflow_serving/util/json_tensor_test.cc, REST_MD = tensorflow_serving/g3doc/api_rest.md,
PREDICT = tensorflow_serving/servables/tensorflow/predict_util.cc,
METADATA = tensorflow_serving/servables/tensorflow/get_model_metadata_impl.cc,
INPUTS = tensorflow/cc/saved_model/util.cc (TensorFlow; GetInputValues, called by PREDICT's RunPredict),
MODEL_SERVICE = tensorflow_serving/model_servers/model_service_impl.cc.
The models are built in the set-up from upstream's generator scripts (tests/tfs_models.py); one
real server on 127.0.0.1 is shared by the module. Where we differ, README "Known differences".
"""
import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

import tfs_client
import tfs_models
from serving.model_manager import ModelConfig, VersionPolicy
from serving.server import ModelServer

TWO_VERSIONS = "saved_model_half_plus_two_2_versions"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfs")
    tfs_models.half_plus_two_tf1(str(root / "default" / "00000123"))
    tfs_models.half_plus_two_tf1(str(root / "half_plus_three" / "00000123"), b=3.0, c=4.0)
    tfs_models.half_plus_two_tf2(str(root / "tf2" / "00000123"))
    for v in ("00000123", "00000124"):
        tfs_models.half_plus_two_tf1(str(root / TWO_VERSIONS / v))
    tfs_models.counter_tf1(str(root / "counter" / "1"))
    tfs_models.counter_tf1(str(root / "counter_warm" / "1"))
    warm = predict_pb2.PredictRequest()
    warm.model_spec.signature_name = "incr_counter"
    tfs_models.write_warmup(str(root / "counter_warm" / "1"), [warm])
    tfs_models.json_cases_tf2(str(root / "cases" / "1"))
    tfs_models.scalar_tf2(str(root / "scalar" / "00000123"))
    tfs_models.keras_sequential(str(root / "keras" / "00000123"))
    tfs_models.signature_defaults_tf1(str(root / "defaults" / "1"))
    return root


@pytest.fixture(scope="module")
def server(models):
    configs = [ModelConfig(n, str(models / n)) for n in
               ("default", "half_plus_three", "tf2", "counter", "counter_warm", "cases", "scalar", "keras",
                "defaults")]
    # HANDLER: the 2-version model with a specific policy on 123 and label Version_Label -> 123.
    configs.append(ModelConfig(TWO_VERSIONS, str(models / TWO_VERSIONS), VersionPolicy("specific", specific=(123,)),
                               (("Version_Label", 123),)))
    srv = ModelServer(configs, port=0, rest_port=0, poll_seconds=0.5).start()
    yield srv
    srv.stop(grace=1)


@pytest.fixture(scope="module")
def stub(server):
    with tfs_client.prediction_stub(server.target) as prediction:
        yield prediction


@pytest.fixture(scope="module")
def model_stub(server):
    with tfs_client.model_stub(server.target) as model_service:
        yield model_service


def _code(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def verify_predict(stub, name, expected, specify_output=True, batch_input=False, signature="serving_default",
                   version=123):
    """TMS VerifyPredictRequest (test_util/tensorflow_model_server_test_base.py), as upstream writes it."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    result = stub.Predict(request, 30)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1          # typed *_val, not tensor_content
    assert result.outputs["y"].float_val[0] == expected
    assert (result.model_spec.name, result.model_spec.signature_name, result.model_spec.version.value) == \
        (name, signature, version)


def _example_input(request, x=2.0):
    example = request.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([x])


def _examples_request(request_class, name: str, signature: str):
    """A Classify/Regress request for model `name`'s `signature` on one example x=2.0."""
    request = request_class()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    _example_input(request)
    return request


# --- gRPC: tensorflow_model_server_test.py ------------------------------------------------------
def test_get_model_status(model_stub):
    """TMS testGetModelStatus."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    result = model_stub.GetModelStatus(request, 30)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == 123
    assert result.model_version_status[0].status.error_code == 0


def test_get_model_metadata(stub):
    """TMS testGetModelMetadata."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    result = stub.GetModelMetadata(request, 30)
    assert result.model_spec.name == "default" and result.model_spec.version.value == 123
    assert list(result.metadata) == ["signature_def"]
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    result.metadata["signature_def"].Unpack(sig_map)
    assert sig_map.signature_def["serving_default"].inputs["x"].name == "x:0"


@pytest.mark.parametrize("specify_output", [True, False])
def test_predict_saved_model(stub, specify_output):
    """TMS testPredictSavedModel / testGoodModelConfig: x=[2.0] shape [1] on a [-1, 1] input -> y 3.0."""
    verify_predict(stub, "default", 3.0, specify_output=specify_output)


def test_predict_half_plus_three(stub):
    """TMS testGoodModelConfig: half_plus_three -> 4.0 (a ParseExample graph)."""
    verify_predict(stub, "half_plus_three", 4.0, specify_output=False)


def test_predict_tf2(stub):
    """TMS _GetSavedModelHalfPlusTwoTf2 models: the TF2 export answers like the TF1 one."""
    verify_predict(stub, "tf2", 3.0)


@pytest.mark.parametrize("name", ["default", "tf2"])
def test_classify(stub, name):
    """TMS testClassify / testClassifyTf2: one classification, one class, score 3.0, no label."""
    result = stub.Classify(_examples_request(classification_pb2.ClassificationRequest, name, "classify_x_to_y"), 30)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    assert result.result.classifications[0].classes[0].label == ""
    assert (result.model_spec.name, result.model_spec.signature_name, result.model_spec.version.value) == \
        (name, "classify_x_to_y", 123)


@pytest.mark.parametrize("name", ["default", "tf2"])
def test_regress(stub, name):
    """TMS testRegress / testRegressTf2."""
    result = stub.Regress(_examples_request(regression_pb2.RegressionRequest, name, "regress_x_to_y"), 30)
    assert len(result.result.regressions) == 1 and result.result.regressions[0].value == 3.0
    assert result.model_spec.version.value == 123


@pytest.mark.parametrize("name", ["default", "tf2"])
def test_multi_inference(stub, name):
    """TMS testMultiInference / testMultiInferenceTf2."""
    request = inference_pb2.MultiInferenceRequest()
    request.tasks.add().model_spec.name = name
    request.tasks[0].model_spec.signature_name = "regress_x_to_y"
    request.tasks[0].method_name = "tensorflow/serving/regress"
    request.tasks.add().model_spec.name = name
    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/classify"
    _example_input(request)
    result = stub.MultiInference(request, 30)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for i in range(2):
        assert result.results[i].model_spec.signature_name == request.tasks[i].model_spec.signature_name
        assert result.results[i].model_spec.version.value == 123


def test_tf_saved_model_save_scalar_input(stub):
    """TMS test_tf_saved_model_save: a TensorSpec(None) input takes x of shape [1]; y = 12.0."""
    verify_predict(stub, "scalar", 12.0, specify_output=False)


def test_keras_sequential_batch_input(stub):
    """TMS test_sequential_keras_saved_model_save: batch_input [1, 1] -> 2.0."""
    verify_predict(stub, "keras", 2.0, specify_output=False, batch_input=True)


def test_counter_signatures_without_inputs_and_warmup_leaves_state_alone(stub):
    """servables/tensorflow/testdata/export_counter.py: stateful signatures with no inputs. Loading
    must not run them (no synthetic warm-up): the counter starts at 0."""
    def call(sig, **inputs):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "counter"
        request.model_spec.signature_name = sig
        for k, v in inputs.items():
            request.inputs[k].dtype = types_pb2.DT_FLOAT
            request.inputs[k].float_val.append(v)
        return stub.Predict(request, 30).outputs["output"].float_val[0]
    assert call("get_counter") == 0.0  # non-zero only if loading had run a signature
    assert call("incr_counter") == 1.0
    assert call("incr_counter_by", delta=3.0) == 4.0
    assert call("reset_counter") == 0.0


def test_warmup_replays_the_records_once(stub):
    """servables/tensorflow/saved_model_warmup_util.cc: assets.extra/tf_serving_warmup_requests is
    replayed before the version is served -- here one incr_counter record, so the counter is 1."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "counter_warm"
    request.model_spec.signature_name = "get_counter"
    assert stub.Predict(request, 30).outputs["output"].float_val[0] == 1.0


# --- gRPC status codes -------------------------------------------------------------------------
def test_unknown_signature_is_failed_precondition(stub):
    """PREDICT RunPredict: 'Serving signature key "nope" not found.' FAILED_PRECONDITION."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "nope"
    code, details = _code(lambda: stub.Predict(request, 30))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and 'Serving signature key "nope" not found.' in details


def test_missing_model_spec_is_invalid_argument(stub):
    """servables/tensorflow/predict_impl.cc: 'Missing ModelSpec' INVALID_ARGUMENT (also Metadata)."""
    code, details = _code(lambda: stub.Predict(predict_pb2.PredictRequest(), 30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Missing ModelSpec" in details
    code, _ = _code(lambda: stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        metadata_field=["signature_def"]), 30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_output_filter_errors(stub):
    """PREDICT PreProcessPrediction: unknown and duplicated output aliases are INVALID_ARGUMENT."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    request.output_filter.extend(["y", "y"])
    code, details = _code(lambda: stub.Predict(request, 30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "duplicate output tensor alias: y" in details
    del request.output_filter[:]
    request.output_filter.append("zz")
    code, details = _code(lambda: stub.Predict(request, 30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "output tensor alias not found in signature: zz" in details


def _float_request(name: str, **inputs: list[float]) -> predict_pb2.PredictRequest:
    """A Predict on model `name` with float32 inputs (shape [n] for n > 1 values, else a scalar)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, values in inputs.items():
        request.inputs[key].dtype = types_pb2.DT_FLOAT
        request.inputs[key].float_val.extend(values)
        if len(values) > 1:
            request.inputs[key].tensor_shape.dim.add().size = len(values)
    return request


def test_input_errors(stub):
    """INPUTS GetInputValues: a signature alias missing from the request (and without a default) and
    a request alias the signature does not have are INVALID_ARGUMENT, with TensorFlow's texts."""
    request = _float_request("default", q=[2.0])
    code, details = _code(lambda: stub.Predict(request, 30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == ("Signature input alias: x(feed name: x:0) not found in request and no default value "
                       "provided. Inputs expected to be in the request {q}, or default input alias set: ")
    request.inputs["x"].CopyFrom(request.inputs["q"])
    code, details = _code(lambda: stub.Predict(request, 30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "Inputs contains invalid name. Used request inputs: x, request input: q,x"


def test_signature_defaults(stub):
    """INPUTS GetInputValues: an input alias the request leaves out is fed the SignatureDef's
    default (meta_graph.proto `defaults`); one the request gives overrides it."""
    def predict(**inputs):
        return list(stub.Predict(_float_request("defaults", **inputs), 30).outputs["y"].float_val)
    assert predict(x=[1.0, 2.0]) == [10.0, 20.0]
    assert predict(x=[1.0, 2.0], k=[3.0]) == [3.0, 6.0]
    code, details = _code(lambda: stub.Predict(_float_request("defaults", k=[3.0]), 30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Signature input alias: x(feed name: x:0) not found in request" in details
    assert details.endswith("Inputs expected to be in the request {k}, or default input alias set: k")


def test_metadata_needs_signature_def_field(stub):
    """METADATA: no metadata_field is INVALID_ARGUMENT; an unknown one too."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    code, _ = _code(lambda: stub.GetModelMetadata(request, 30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    request.metadata_field.append("foo")
    code, details = _code(lambda: stub.GetModelMetadata(request, 30))
    # ValidateGetModelMetadataRequest's errors::InvalidArgument concatenates: "%s" stays literal.
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details == "Metadata field %s is not supportedfoo"


def test_unknown_label_and_version(stub):
    """model_servers/server_core.cc: unknown label INVALID_ARGUMENT; unknown version NOT_FOUND."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = TWO_VERSIONS
    request.model_spec.version_label = "Version_Nonexistent"
    code, details = _code(lambda: stub.Predict(request, 30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Unrecognized servable version label" in details
    request.model_spec.version.value = 124  # on disk, not in the specific policy
    assert _code(lambda: stub.Predict(request, 30))[0] == grpc.StatusCode.NOT_FOUND


def test_handle_reload_config_request(server, models, model_stub, stub):
    """TMS testModelConfigReload over gRPC: ModelService.HandleReloadConfigRequest with a
    ModelServerConfig; the previous model list is restored afterwards."""
    before = list(server.manager.models.values())
    config = model_server_config_pb2.ModelServerConfig()
    for name in ("default", "half_plus_three"):
        entry = config.model_config_list.config.add(name=name, base_path=str(models / name),
                                                    model_platform="tensorflow")
        if name == "half_plus_three":
            entry.model_version_policy.specific.versions.append(123)
            entry.version_labels["stable"] = 123
    try:
        response = model_stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), 60)
        assert response.status.error_code == 0
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tf2"
        assert _code(lambda: stub.Predict(request, 30))[0] == grpc.StatusCode.NOT_FOUND  # unloaded
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_three"
        request.model_spec.version_label = "stable"
        request.inputs["x"].float_val.append(2.0)
        request.inputs["x"].dtype = types_pb2.DT_FLOAT
        request.inputs["x"].tensor_shape.dim.add().size = 1
        assert stub.Predict(request, 30).outputs["y"].float_val[0] == 4.0
        bad = model_server_config_pb2.ModelServerConfig()
        bad.model_config_list.config.add(name="x", base_path="/b", model_platform="pytorch")
        code, _ = _code(lambda: model_stub.HandleReloadConfigRequest(
            model_management_pb2.ReloadConfigRequest(config=bad), 60))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        server.manager.reload(before)


def test_handle_reload_config_request_without_config(model_stub):
    """MODEL_SERVICE HandleReloadConfigRequest: a request with no config (and so no
    model_config_list) is INVALID_ARGUMENT with upstream's text; nothing is unloaded."""
    code, details = _code(lambda: model_stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), 60))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == ("ServerModelConfig type not supported by HandleReloadConfigRequest. "
                       "Only ModelConfigList is currently supported")


# --- REST: tensorflow_model_server_test.py and http_rest_api_handler_test.cc ----------------------
def rest(server, path, body=None, raw=None, method=None):
    """(status, parsed JSON) of one REST call."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_rest_classify(server):
    """TMS testClassifyREST: {'results': [[['', 3.0]]]}."""
    assert rest(server, "/v1/models/default:classify",
                {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}) == (200, {"results": [[["", 3.0]]]})


def test_rest_regress(server):
    """TMS testRegressREST: {'results': [3.0]}."""
    assert rest(server, "/v1/models/default:regress",
                {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}) == (200, {"results": [3.0]})


def test_rest_predict_bare_values(server):
    """TMS testPredictREST / testPredictColumnarREST: one output -> bare values, not {"y": ...}."""
    assert rest(server, "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]}) == \
        (200, {"predictions": [3.0, 3.5, 4.0]})
    assert rest(server, "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]}) == \
        (200, {"outputs": [3.0, 3.5, 4.0]})


def test_rest_get_status(server):
    """TMS testGetStatusREST, exactly."""
    assert rest(server, "/v1/models/default") == (200, {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})


def test_rest_get_model_metadata(server):
    """TMS testGetModelMetadataREST / HANDLER GetModelMetadata: the layout of
    testdata/saved_model_half_plus_two_2_versions_metadata.json (proto field names, int64 as
    strings, default values written)."""
    status, doc = rest(server, f"/v1/models/{TWO_VERSIONS}/metadata")
    assert status == 200
    assert doc["model_spec"] == {"name": TWO_VERSIONS, "signature_name": "", "version": "123"}
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) == {"regress_x2_to_y3", "serving_default", "classify_x_to_y", "classify_x2_to_y3",
                         "regress_x_to_y2", "regress_x_to_y"}
    assert sigs["serving_default"] == {
        "inputs": {"x": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""},
                                                                       {"size": "1", "name": ""}],
                                                               "unknown_rank": False}, "name": "x:0"}},
        "outputs": {"y": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1", "name": ""},
                                                                        {"size": "1", "name": ""}],
                                                                "unknown_rank": False}, "name": "y:0"}},
        "method_name": "tensorflow/serving/predict", "defaults": {}}
    assert sigs["classify_x_to_y"]["inputs"]["inputs"]["name"] == "tf_example:0"
    assert sigs["classify_x_to_y"]["outputs"]["scores"]["name"] == "y:0"


@pytest.mark.parametrize("method,path,message", [
    ("GET", "/v1/foo", "Malformed request"),
    ("POST", "/v1/foo", "Malformed request"),
    ("GET", "/v1/models", "Missing model name"),
    ("GET", "/v1/models/debug/model_name", "Malformed request"),
    ("POST", "/v1/models", "Malformed request"),
    ("GET", "/v1/models/foo:predict", "Malformed request"),
    ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
    ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
    ("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "Failed to convert version"),
    ("POST", "/v1/models/foo/metadata", "Malformed request"),
    ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request"),
])
def test_rest_unsupported_api_calls(server, method, path, message):
    """HANDLER UnsupportedApiCalls: 400 (INVALID_ARGUMENT) with TF Serving's text."""
    status, doc = rest(server, path, raw=b"" if method == "POST" else None, method=method)
    assert status == 400 and message in doc["error"]


@pytest.mark.parametrize("path", ["/v1/models/foo:predict", "/v1/models/foo/versions/50:predict",
                                  f"/v1/models/{TWO_VERSIONS}/versions/99:predict"])
def test_rest_predict_model_name_version_errors(server, path):
    """HANDLER PredictModelNameVersionErrors: NOT_FOUND -> 404."""
    assert rest(server, path, {"instances": [1]})[0] == 404


@pytest.mark.parametrize("body,path_tail,message", [
    (b"", ":predict", "JSON Parse error: The document is empty"),
    (b"instances = [1, 2]", ":predict", "JSON Parse error: Invalid value"),
    (b'{ "instances": ["x", "y"] }', ":predict", "not of expected type: float"),
    (b'{ "instances": ["x", "y"] }', "/labels/Version_Nonexistent:predict", "Unrecognized servable version label"),
    (b'{ "signature_name": 100 }', ":predict", "'signature_name' key must be a string value."),
])
def test_rest_predict_request_errors(server, body, path_tail, message):
    """HANDLER PredictRequestErrors: each a 400 with TF Serving's text."""
    status, doc = rest(server, f"/v1/models/{TWO_VERSIONS}{path_tail}", raw=body)
    assert status == 400 and message in doc["error"], doc


@pytest.mark.parametrize("path_tail,body,expected", [
    (":predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]}, {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
    ("/versions/123:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
    ("/labels/Version_Label:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
    ("/versions/123:predict", {"signature_name": "serving_default", "instances": [3.0, 4.0]},
     {"predictions": [3.5, 4.0]}),
    ("/versions/123:predict", {"signature_name": "serving_default", "inputs": [3.0, 4.0]}, {"outputs": [3.5, 4.0]}),
    (":regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}, {"results": [42]}),
    ("/versions/123:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}, {"results": [42]}),
    ("/labels/Version_Label:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
     {"results": [42]}),
    (":classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}, {"results": [[["", 12]]]}),
    ("/labels/Version_Label:classify", {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]},
     {"results": [[["", 7]]]}),
])
def test_rest_predict_regress_classify(server, path_tail, body, expected):
    """HANDLER Predict / Regress / Classify (shapes left to the model: [2, 2] into a [-1, 1] input)."""
    assert rest(server, f"/v1/models/{TWO_VERSIONS}{path_tail}", body) == (200, expected)


@pytest.mark.parametrize("path_tail", ["", "/versions/123", "/labels/Version_Label"])
def test_rest_get_status_by_version_and_label(server, path_tail):
    """HANDLER GetStatus: all versions, a version, a label."""
    assert rest(server, f"/v1/models/{TWO_VERSIONS}{path_tail}") == (200, {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})


def test_rest_predict_unknown_signature(server):
    """HANDLER / JSON (the REST path's signature lookup in json_tensor.cc's predict request
    filling): an unknown signature_name is 400 with TF Serving's text (gRPC: FAILED_PRECONDITION)."""
    status, doc = rest(server, "/v1/models/default:predict", {"signature_name": "nope", "instances": [1.0]})
    assert (status, doc) == (400, {"error": 'Serving signature name: "nope" not found in signature def'})


def test_rest_content_type(server):
    """HANDLER: every answer is Content-Type application/json."""
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}/v1/models/default")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("application/json")


# --- REST JSON: json_tensor_test.cc and api_rest.md ---------------------------------------------
def predict_cases(server, body, sig=None):
    if sig:
        body = {"signature_name": sig, **body}
    return rest(server, "/v1/models/cases:predict", raw=body if isinstance(body, bytes) else json.dumps(body).encode())


def test_json_single_unnamed_int_tensor(server):
    """JSON SingleUnnamedTensor: [[1,2],[3,4],[5,6]] as DT_INT32 [3, 2]."""
    assert predict_cases(server, {"instances": [[1, 2], [3, 4], [5, 6]]}, "ints") == \
        (200, {"predictions": [[1, 2], [3, 4], [5, 6]]})


def test_json_mixed_ints_and_floats_for_a_float_tensor(server):
    """JSON MixedInputForFloatTensor: JSON integers are valid float values; float32 written at float
    precision (REST_MD: 5.003, not 5.0029997825622559)."""
    status, doc = predict_cases(server, {"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]})
    assert status == 200 and doc == {"predictions": [1.0, 2.0, 3.0, 4.0, 5.003, 0.007, 0.0]}
    status, raw = rest(server, "/v1/models/cases:predict", {"instances": [2.1]})
    assert raw == {"predictions": [2.1]}


def test_json_float_precision_loss_and_overflow(server):
    """JSON FloatTensorWithPrecisionLoss / ...ExceedsMaxReturnsInf / ...ExceedsMinReturnsZero."""
    status, doc = predict_cases(server, {"instances": [1435774380, 1435774380.0]})
    # Written at float32 precision: the shortest decimal that reads back as the same float32.
    assert status == 200 and doc["predictions"][0] == doc["predictions"][1]
    assert np.float32(doc["predictions"][0]) == np.float32(1435774380)
    body = json.dumps({"instances": [1.7976931348623157e308, -1.7976931348623157e308, 2.2250738585072014e-308]})
    status, doc = predict_cases(server, body.encode())
    assert status == 200 and doc["predictions"][:2] == [float("inf"), float("-inf")] and doc["predictions"][2] == 0


def test_json_non_finite_in_and_out(server):
    """JSON FromJsonSingleFloatTensorNonFinite: NaN / Infinity / -Infinity literals, both ways."""
    status, doc = predict_cases(server, b'{"instances": [NaN, Infinity, 3, -Infinity]}')
    assert status == 200
    assert np.isnan(doc["predictions"][0]) and doc["predictions"][1:] == [float("inf"), 3.0, float("-inf")]


def test_json_six_digit_values(server):
    """JSON FromJsonSingleFloatTensorSixDigitPrecision: the float32 values come back exactly."""
    values = [9000000, 999999, 0.5, 0.0003, 0.00003, 555557.5]
    status, doc = predict_cases(server, {"instances": [values[:3], values[3:]]})
    assert status == 200 and doc == {"predictions": [[9000000.0, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]}


def test_json_bytes_output_is_b64(server):
    """JSON FromJsonSingleBytesTensor / REST_MD: outputs named *_bytes answer {"b64": ...}; b64 input."""
    status, doc = predict_cases(server, {"inputs": [[{"b64": "aGVsbG8="}, "world"], ["tf", "serving"]]}, "echo")
    assert status == 200
    assert doc["outputs"]["text_bytes"] == [[{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
                                           [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}]]
    assert doc["outputs"]["text"] == [["hello", "world"], ["tf", "serving"]]


def test_json_multiple_named_tensors(server):
    """JSON MultipleNamedTensor / REST_MD: objects per row in, objects per row out."""
    status, doc = predict_cases(server, {"instances": [{"int_tensor": [1, 2], "str_tensor": "foo"},
                                                       {"int_tensor": [3, 4], "str_tensor": "bar"}]}, "named")
    assert status == 200 and doc == {"predictions": [{"int_out": [1, 2], "str_out": "foo"},
                                                     {"int_out": [3, 4], "str_out": "bar"}]}


@pytest.mark.parametrize("body,sig,message", [
    ({"instances": [[1, 2], [3, 4]], "inputs": [[1, 2]]}, "ints", "Not formatted correctly"),
    ({"instances": [[1, 2], [3, 4], [5, 6, 7]]}, "ints", "Expecting tensor size"),
    ({"instances": [[1, 2], [3, 4], [[5, 6]]]}, "ints", "Expecting shape"),
    ({"instances": [1, [1]]}, "ints", "Expecting shape"),
    ({"instances": [[1, 2], ["a", "b"]]}, "ints", "not of expected type"),
    ({"signature_name": 5, "instances": [[1, 2]]}, None, "must be a string value"),
    ({"instances": [{"int_tensor": [1], "str_tensor": "a"}, [1, 20, 30]]}, "named", "Expecting object but got list"),
    ({"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]}, "named", "expecting list of objects"),
])
def test_json_tensor_errors(server, body, sig, message):
    """JSON SingleUnnamedTensorErrors / MultipleNamedTensorErrors: 400 with TF Serving's text."""
    status, doc = predict_cases(server, body, sig)
    assert status == 400 and message in doc["error"], doc


@pytest.mark.parametrize("body,message", [
    ({"signature_name": ["hello"], "examples": [{"names": ["foo", "bar"]}]}, "'signature_name' key must be a string"),
    ({"context": [{"names": ["foo", "bar"]}]}, "Example must be JSON object"),
    ({"examples": {"names": ["foo", "bar"]}}, "list/array"),
    ({"examples": [[{"names": ["foo", "bar"]}]]}, "Example must be JSON object"),
    ({"examples": [{"names": [10, None]}]}, "names has element with unexpected JSON type: Null"),
    ({"examples": [{"names": [10, 10.0]}]}, "feature: names expecting type: int64"),
    ({"examples": [{"names": [10, {"test": 10}]}]}, "names has element with unexpected JSON type: Object"),
    ({"examples": [{"names": [[10], 20]}]}, "names has element with unexpected JSON type: Array"),
    ({"examples": [{"names": [20, 18446744073709551603]}]}, "Only int64_t is supported"),
])
def test_json_classify_regress_request_errors(server, body, message):
    """JSON ClassifyRegressRequestTest JsonErrors, on both verbs."""
    for verb in ("classify", "regress"):
        status, doc = rest(server, f"/v1/models/default:{verb}", body)
        assert status == 400 and message in doc["error"], (verb, doc)
