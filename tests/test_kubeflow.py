"""The Kubeflow side, checked as hard as it can be without a cluster: the compiled KFP v2 spec,
the serving manifests, and multi-worker training for real on CPU."""
import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from pipeline.config import PROJECT_ROOT, load_config

IMAGE = "registry.example.com/fmnist:test"
EXPECTED_TASKS = {"FastCsvExampleGen", "ImportSchemaGen", "StatisticsGen", "ExampleValidator",
                  "ValidationGate", "Transform", "Trainer", "Evaluator", "AtomicPusher", "RunReport"}
EXPECTED_DEPENDENCIES = {
    "StatisticsGen": {"FastCsvExampleGen", "ImportSchemaGen"},
    "ExampleValidator": {"StatisticsGen", "ImportSchemaGen"},
    "ValidationGate": {"ExampleValidator", "StatisticsGen", "ImportSchemaGen"},
    "Transform": {"FastCsvExampleGen", "ImportSchemaGen", "ValidationGate"},
    "Trainer": {"Transform", "ImportSchemaGen"},
    "AtomicPusher": {"Trainer", "Evaluator"},
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "fmnist.json"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "kubeflow", "compile", "--image", IMAGE,
         "--pipeline-root", "gs://bucket/root", "--spec", str(out), "--data-root", "gs://bucket/data",
         "--serving-root", "gs://bucket/serving", "--gpus", "2", "--accelerator", "NVIDIA_TESLA_V100"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_spec_parses_with_kfps_own_protos(spec):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    parsed = json_format.ParseDict(spec["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert parsed.pipeline_info.name == "fmnist"
    assert parsed.schema_version.startswith("2.")


def test_every_component_with_its_dependencies(spec):
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    assert EXPECTED_TASKS <= set(tasks)
    for task, upstream in EXPECTED_DEPENDENCIES.items():
        assert upstream <= set(tasks[task].get("dependentTasks", [])), (task, tasks[task].get("dependentTasks"))
    for task in EXPECTED_TASKS:
        assert tasks[task]["cachingOptions"].get("enableCache") is True, task


def test_image_and_gpus_on_the_trainer_only(spec):
    executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
    containers = {name: e["container"] for name, e in executors.items() if "container" in e}
    assert containers and all(c["image"] == IMAGE for c in containers.values())
    with_gpu = {name for name, c in containers.items() if c.get("resources", {}).get("accelerator")}
    assert with_gpu == {"Trainer_executor"}
    accelerator = containers["Trainer_executor"]["resources"]["accelerator"]
    assert accelerator == {"count": "2", "type": "NVIDIA_TESLA_V100"}
    assert "components.custom_components._EpochsTrainerExecutor" in containers["Trainer_executor"]["args"]


def test_runtime_parameters_are_wired_into_the_steps(spec):
    root = spec["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    assert {k: v["type"] for k, v in root.items()} == {
        "data_root": "STRING", "serving_model_dir": "STRING", "epochs": "INT", "accuracy_threshold": "DOUBLE"}
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]

    def param(task, key):
        return tasks[task]["inputs"]["parameters"][key].get("componentInputParameter")

    assert param("FastCsvExampleGen", "input_base") == "data_root"
    assert param("ValidationGate", "input_base") == "data_root"
    assert param("Trainer", "epochs") == "epochs"
    assert param("Evaluator", "accuracy_threshold") == "accuracy_threshold"
    assert param("AtomicPusher", "serving_model_dir") == "serving_model_dir"
    defaults = spec["runtimeConfig"]["parameters"]  # the config's values, overridable per run
    assert defaults["data_root"] == {"stringValue": "gs://bucket/data"}
    assert defaults["serving_model_dir"] == {"stringValue": "gs://bucket/serving/fmnist"}
    assert defaults["epochs"] == {"intValue": str(load_config("default").epochs)}
    assert float(defaults["accuracy_threshold"]["doubleValue"]) == load_config("default").accuracy_threshold


def test_runtime_values_reach_the_executors(tmp_path):
    """What the runtime parameters feed is honoured by the executors (no cluster needed)."""
    from components.custom_components import set_lower_bounds
    from pipeline.pipeline import eval_config
    from tfx.utils import proto_utils

    rewritten = json.loads(set_lower_bounds(proto_utils.proto_to_json(eval_config(0.9)), 0.42))
    text = json.dumps(rewritten)
    assert "0.42" in text and "0.9," not in text


def _manifests():
    docs = []
    for name in sorted(os.listdir(PROJECT_ROOT / "kubeflow" / "manifests")):
        with open(PROJECT_ROOT / "kubeflow" / "manifests" / name) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def test_manifests_match_the_config():
    config = load_config("default")
    docs = {d["kind"]: d for d in _manifests()}
    assert {"Deployment", "Service", "InferenceService"} <= set(docs)
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("tensorflow/serving:")
    args = dict(a.lstrip("-").split("=", 1) for a in container["args"])
    assert args["model_name"] == config.model_name
    assert args["model_base_path"].endswith("/" + config.model_name)
    assert (args["port"], args["rest_api_port"]) == ("8500", "8501")
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{config.model_name}"
    mount = container["volumeMounts"][0]["mountPath"]
    assert args["model_base_path"] == f"{mount}/{config.model_name}"
    assert {p["port"] for p in docs["Service"]["spec"]["ports"]} == {8500, 8501}
    assert docs["InferenceService"]["metadata"]["name"] == config.model_name
    assert docs["InferenceService"]["spec"]["predictor"]["tensorflow"]["storageUri"].endswith("/" + config.model_name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_train_together_and_the_chief_exports(sample_run, tmp_path):
    """MultiWorkerMirroredStrategy for real: two processes on 127.0.0.1, TF_CONFIG, the real run_fn."""
    _, summary = sample_run
    transform = summary.component("Transform")
    examples = transform.outputs["transformed_examples"][0].uri
    graph = transform.outputs["transform_graph"][0].uri
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    script = PROJECT_ROOT / "tests" / "multiworker_train.py"
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, str(script), examples, graph, str(tmp_path / "serving"), str(tmp_path / f"run{index}")],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for p in procs:
        try:
            outputs.append(p.communicate(timeout=900)[0])
        finally:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n=====\n".join(o[-2500:] for o in outputs)
    import re
    lines = [re.findall(r"distribution strategy: .*", out) for out in outputs]
    # tf.distribute.MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy.
    assert all(l and re.search(r"(MultiWorkerMirrored|CollectiveAllReduce)Strategy with 2 replica", l[0])
               for l in lines), lines
    import numpy as np
    import tensorflow as tf
    loaded = tf.saved_model.load(str(tmp_path / "serving"))
    out = loaded.signatures["serving_images"](images=tf.zeros([3, 28, 28]))
    assert out["probabilities"].shape == (3, 10)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1, rtol=1e-5)
