"""The Kubeflow side, checked as hard as it can be without a cluster: the compiled KFP v2 spec,
the serving manifests, and multi-worker training for real on CPU."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from pipeline.config import PROJECT_ROOT, load_config
from schema import contract

IMAGE = "registry.example.com/fmnist:test"
GPU_IMAGE = IMAGE + "-gpu"
EXPECTED_TASKS = set(contract.COMPONENT_IDS)
EXPECTED_DEPENDENCIES = {
    contract.STATISTICS_GEN: {contract.EXAMPLE_GEN, contract.SCHEMA_GEN},
    contract.EXAMPLE_VALIDATOR: {contract.STATISTICS_GEN, contract.SCHEMA_GEN},
    contract.VALIDATION_GATE: {contract.EXAMPLE_VALIDATOR, contract.STATISTICS_GEN, contract.SCHEMA_GEN},
    contract.TRANSFORM: {contract.EXAMPLE_GEN, contract.SCHEMA_GEN, contract.VALIDATION_GATE},
    contract.TRAINER: {contract.TRANSFORM, contract.SCHEMA_GEN},
    contract.EVALUATOR: {contract.TRAINER, contract.BASELINE, contract.EXAMPLE_GEN},
    contract.INFRA_VALIDATOR: {contract.TRAINER, contract.EXAMPLE_GEN},
    contract.PUSHER: {contract.EVALUATOR, contract.INFRA_VALIDATOR},
}


def _compile(out, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "kubeflow", "compile", "--image", IMAGE,
         "--spec", str(out), "--data-root", "gs://bucket/data", "--serving-root", "gs://bucket/serving",
         *extra], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    """The open-source KFP YAML (2 GPUs) and the Vertex JSON (2 GPUs), compiled by the CLI."""
    d = tmp_path_factory.mktemp("kfp")
    kfp = _compile(d / "fmnist.yaml", "--pipeline-root", "minio://mlpipeline/v2/artifacts", "--gpus", "2",
                   "--accelerator", "NVIDIA_TESLA_V100")
    assert kfp.returncode == 0, kfp.stderr[-3000:]
    # Quiet by default like the other TensorFlow commands: no native start-up lines (pipeline/quiet.py).
    assert not [n for n in ("oneDNN", "cuda drivers", "cuInit", "absl::InitializeLog") if n in kfp.stderr], \
        kfp.stderr[-3000:]
    vertex = _compile(d / "fmnist.json", "--target", "vertex", "--pipeline-root", "gs://bucket/root",
                      "--gpus", "2", "--accelerator", "NVIDIA_TESLA_V100")
    assert vertex.returncode == 0, vertex.stderr[-3000:]
    docs = [doc for doc in yaml.safe_load_all((d / "fmnist.yaml").read_text()) if doc]
    return docs, json.loads((d / "fmnist.json").read_text())


@pytest.fixture(scope="module")
def spec(specs):
    return specs[0][0]


def test_open_source_spec_is_what_the_kfp_api_server_takes(specs):
    """schema 2.1.0, a name, a root, typed parameters with defaults (v2_template.go)."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    docs, _ = specs
    parsed = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    assert parsed.pipeline_info.name == "fmnist" and parsed.schema_version == "2.1.0"
    assert parsed.default_pipeline_root == "minio://mlpipeline/v2/artifacts"
    for name, param in parsed.root.input_definitions.parameters.items():
        assert param.parameter_type != 0 and param.HasField("default_value"), name
    platform = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
    assert "kubernetes" in platform.platforms
    assert "runtimeConfig" not in docs[0] and "displayName" not in docs[0]


def test_kfp_client_takes_the_file_unchanged(specs, tmp_path):
    """kfp 2.16's own loader (what upload_pipeline / create_run_from_pipeline_package read)."""
    from kfp.client import client as kfp_client

    docs, _ = specs
    path = tmp_path / "fmnist.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    loaded = kfp_client._extract_pipeline_yaml(str(path))
    assert loaded.pipeline_spec.pipeline_info.name == "fmnist"
    assert "kubernetes" in loaded.platform_spec.platforms
    with pytest.raises(ValueError, match="should end with"):  # why the old .json was refused
        kfp_client._extract_pipeline_yaml(str(tmp_path / "fmnist.json"))


def test_every_component_with_its_dependencies(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == EXPECTED_TASKS
    for task, upstream in EXPECTED_DEPENDENCIES.items():
        assert upstream <= set(tasks[task].get("dependentTasks", [])), (task, tasks[task].get("dependentTasks"))
    executors = spec["deploymentSpec"]["executors"]
    assert all("container" in e for e in executors.values()), "only container executors run on open-source KFP"
    # ExampleGen's inputs are a path and patterns: KFP's cache key cannot see new files under it.
    cached = {name for name in EXPECTED_TASKS if tasks[name]["cachingOptions"].get("enableCache")}
    assert cached == EXPECTED_TASKS - {contract.EXAMPLE_GEN}


def test_every_step_runs_the_project_entrypoint_and_example_gen_its_driver(spec):
    containers = {name: e["container"] for name, e in spec["deploymentSpec"]["executors"].items()}
    assert all(c["command"] == ["python", "-m", "kubeflow.entrypoint"] for c in containers.values())
    # --gpus 2: the Trainer runs in the GPU image (make image-gpu), every other step in the image.
    assert {n: c["image"] for n, c in containers.items() if c["image"] != IMAGE} == {"Trainer_executor": GPU_IMAGE}
    example_gen = containers[f"{contract.EXAMPLE_GEN}_executor"]
    assert "lifecycle" not in example_gen and example_gen["args"][0] == "--example-gen-driver"
    assert all("--json_serialized_inputs_spec_args" in c["args"] for c in containers.values())
    baseline = spec["root"]["dag"]["tasks"]["ServedModelBaseline"]["inputs"]["parameters"]["run_token"]
    assert baseline["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


def test_gpus_on_the_trainer_only_in_each_backends_form(specs):
    docs, vertex = specs
    containers = {n: e["container"] for n, e in docs[0]["deploymentSpec"]["executors"].items()}
    with_gpu = {name for name, c in containers.items() if c.get("resources", {}).get("accelerator")}
    assert with_gpu == {"Trainer_executor"}
    # The open-source driver puts resourceType into the pod's limits as a Kubernetes resource name.
    assert containers["Trainer_executor"]["resources"]["accelerator"] == {
        "resourceType": "nvidia.com/gpu", "resourceCount": "2"}
    selector = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["Trainer_executor"]
    assert selector == {"nodeSelector": {"labels": {"cloud.google.com/gke-accelerator": "nvidia-tesla-v100"}}}
    vertex_trainer = vertex["pipelineSpec"]["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    assert vertex_trainer["resources"]["accelerator"] == {"count": "2", "type": "NVIDIA_TESLA_V100"}
    executors = vertex["pipelineSpec"]["deploymentSpec"]["executors"]
    assert "lifecycle" in executors[f"{contract.EXAMPLE_GEN}_executor"]["container"]


def test_no_gpu_request_without_gpus_and_the_tuner_feeds_the_trainer(tmp_path):
    """A CPU compile, with `--set tune=true`: the Tuner step (components/training/tuner.py) reads Transform's
    output and its best_hyperparameters are the Trainer's `hyperparameters` input."""
    out = tmp_path / "cpu.yaml"
    result = _compile(out, "--pipeline-root", "minio://mlpipeline/v2/artifacts",
                      "--set", "tune=true", "--set", "tune_trials=3")
    assert result.returncode == 0, result.stderr[-3000:]
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    assert len(docs) == 1  # no platform spec
    assert "accelerator" not in json.dumps(docs[0]["deploymentSpec"])
    tasks = docs[0]["root"]["dag"]["tasks"]
    assert set(tasks) == EXPECTED_TASKS | {contract.TUNER}
    assert contract.TUNER in tasks[contract.TRAINER]["dependentTasks"]
    assert {contract.TRANSFORM, contract.SCHEMA_GEN} <= set(tasks[contract.TUNER]["dependentTasks"])
    assert tasks[contract.TRAINER]["inputs"]["artifacts"]["hyperparameters"]["taskOutputArtifact"] == \
        {"producerTask": contract.TUNER, "outputArtifactKey": "best_hyperparameters"}
    tuner = docs[0]["deploymentSpec"]["executors"][f"{contract.TUNER}_executor"]["container"]
    assert tuner["command"] == ["python", "-m", "kubeflow.entrypoint"] and tuner["image"] == IMAGE
    parameters = tasks[contract.TUNER]["inputs"]["parameters"]
    assert parameters["tuner_fn"]["runtimeValue"]["constant"] == "components.training.tuner.tuner_fn"
    budget = json.loads(parameters["custom_config"]["runtimeValue"]["constant"])
    assert budget["trials"] == 3 and budget["training"]["model"] == "cnn"


@pytest.mark.parametrize("target, root", [("kfp", "/local/dir"), ("kfp", "hdfs://x/y"), ("vertex", "minio://b/p")])
def test_a_pipeline_root_the_backend_cannot_use_is_refused_at_compile_time(tmp_path, target, root):
    result = _compile(tmp_path / "x.yaml", "--target", target, "--pipeline-root", root)
    assert result.returncode == 2
    assert root in result.stderr and "gs://" in result.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_runtime_parameters_are_wired_into_the_steps(specs):
    docs, vertex = specs
    spec = docs[0]
    root = spec["root"]["inputDefinitions"]["parameters"]
    config = load_config("default")
    assert {k: v["parameterType"] for k, v in root.items()} == {
        "data_root": "STRING", "serving_model_dir": "STRING", "epochs": "NUMBER_INTEGER",
        "accuracy_threshold": "NUMBER_DOUBLE"}
    assert {k: v["defaultValue"] for k, v in root.items()} == {
        "data_root": "gs://bucket/data", "serving_model_dir": "gs://bucket/serving/fmnist",
        "epochs": config.training.epochs, "accuracy_threshold": config.accuracy_threshold}
    tasks = spec["root"]["dag"]["tasks"]

    def param(task, key):
        return tasks[task]["inputs"]["parameters"][key].get("componentInputParameter")

    assert param(contract.EXAMPLE_GEN, "input_base") == "data_root"
    assert param(contract.VALIDATION_GATE, "input_base") == "data_root"
    assert param(contract.TRAINER, "epochs") == "epochs"
    assert param(contract.EVALUATOR, "accuracy_threshold") == "accuracy_threshold"
    assert param(contract.PUSHER, "serving_model_dir") == "serving_model_dir"
    assert param(contract.BASELINE, "serving_model_dir") == "serving_model_dir"
    # Vertex: the same values as the PipelineJob's runtimeConfig.
    assert vertex["runtimeConfig"]["parameterValues"]["data_root"] == "gs://bucket/data"
    assert vertex["pipelineSpec"]["schemaVersion"] == "2.1.0"


def test_runtime_values_reach_the_executors(tmp_path):
    """What the runtime parameters feed is honoured by the executors (no cluster needed)."""
    from tfx.utils import proto_utils

    from components.custom_components import set_lower_bounds
    from pipeline.pipeline import eval_config

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
    # Served as everywhere else (fmnist serve, the InfraValidator): the contract's thread flags. KServe
    # appends the InferenceService's args to its TF Serving runtime's (kserve
    # pkg/controller/v1beta1/inferenceservice/utils/utils.go, MergeRuntimeContainers).
    for flag in contract.SERVING_THREAD_FLAGS:
        assert flag in container["args"]
        assert flag in docs["InferenceService"]["spec"]["predictor"]["tensorflow"]["args"]


def test_pipeline_image_carries_the_tf_serving_binary_production_runs():
    """By default the InfraValidator in the image validates with the very TF Serving version the
    manifests serve (the build argument TF_SERVING=scratch leaves it out, tools/image)."""
    import re

    dockerfile = (PROJECT_ROOT / "kubeflow" / "Dockerfile").read_text()
    default = re.search(r"^ARG TF_SERVING=tensorflow/serving:(\S+)$", dockerfile, re.M)
    assert default, "TF_SERVING does not default to a tensorflow/serving image"
    assert re.search(r"^FROM \$\{TF_SERVING\} AS (\S+)$", dockerfile, re.M)
    assert re.search(r"cp /mnt/tf-serving/usr/bin/tensorflow_model_server /usr/local/bin/", dockerfile)
    docs = {d["kind"]: d for d in _manifests()}
    image = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"tensorflow/serving:{default.group(1)}"
    assert docs["InferenceService"]["spec"]["predictor"]["tensorflow"]["runtimeVersion"] == default.group(1)


def test_entrypoint_adapts_what_the_open_source_launcher_hands_over():
    """Input as driver/launcher build it (empty schema, converter.go's wrapping, executor-logs,
    minio:// URIs) -> what TFX's entrypoint needs; and back."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2 as pb

    from kubeflow.entrypoint import adapt_input, adapt_output

    executor_input = json_format.ParseDict({
        "inputs": {"artifacts": {"examples": {"artifacts": [{
            "name": "17", "uri": "minio://mlpipeline/v2/artifacts/p/run/ExampleGen/u/examples",
            "type": {"instanceSchema": ""},
            "metadata": {"split_names": '["train", "test"]', "span": 0.0,
                         "tags": {"list": ["a", "b"]}}}]}}},
        "outputs": {"artifacts": {
            "statistics": {"artifacts": [{"name": "statistics",
                                          "uri": "minio://mlpipeline/v2/artifacts/p/run/StatisticsGen/u/statistics",
                                          "type": {"instanceSchema": "title: tfx.ExampleStatistics\n"}}]},
            "executor-logs": {"artifacts": [{"name": "executor-logs", "uri": "minio://x/logs",
                                             "type": {"schemaTitle": "system.Artifact"}}]}},
            "outputFile": "/minio/mlpipeline/v2/artifacts/p/run/StatisticsGen/u/output_metadata.json"},
    }, pb.ExecutorInput())
    inputs_spec = json_format.ParseDict({"artifacts": {"examples": {
        "artifactType": {"instanceSchema": "title: tfx.Examples\ntype: object\n"}}}}, pb.ComponentInputsSpec())
    originals = adapt_input(executor_input, inputs_spec)
    examples = executor_input.inputs.artifacts["examples"].artifacts[0]
    assert examples.type.instance_schema.startswith("title: tfx.Examples")
    assert examples.uri == "/minio/mlpipeline/v2/artifacts/p/run/ExampleGen/u/examples"
    assert json_format.MessageToDict(examples.metadata)["tags"] == ["a", "b"]
    assert "executor-logs" not in executor_input.outputs.artifacts
    local = executor_input.outputs.artifacts["statistics"].artifacts[0].uri
    assert local == "/minio/mlpipeline/v2/artifacts/p/run/StatisticsGen/u/statistics"

    output = json_format.ParseDict({"artifacts": {"statistics": {"artifacts": [{
        "uri": local, "metadata": {"span": 0.0, "version": None}}]}}}, pb.ExecutorOutput())
    adapt_output(output, originals)
    produced = output.artifacts["statistics"].artifacts[0]
    assert produced.uri == "minio://mlpipeline/v2/artifacts/p/run/StatisticsGen/u/statistics"
    assert json_format.MessageToDict(produced.metadata) == {"span": 0.0}
    # gs:// stays: TensorFlow opens it natively (and Vertex's launcher never rewrites it).
    from kubeflow.entrypoint import local_path
    assert local_path("gs://b/x") == "gs://b/x" and local_path("s3://b/x") == "/s3/b/x"


def _trainer(spec: dict) -> tuple[dict, dict]:
    """(the Trainer's container, its constant parameters) in a compiled PipelineSpec."""
    container = spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    parameters = {k: v["runtimeValue"]["constant"] for k, v in spec["root"]["dag"]["tasks"]["Trainer"]["inputs"]
                  ["parameters"].items() if "constant" in v.get("runtimeValue", {})}
    return container, parameters


def test_several_workers_on_open_source_kfp_are_a_tfjob_submitted_by_the_trainer_step(tmp_path):
    out = tmp_path / "workers.yaml"
    result = _compile(out, "--pipeline-root", "gs://bucket/root", "--workers", "3", "--gpus", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 GPU(s) in each of 3 workers (a TFJob)" in result.stdout
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    container, parameters = _trainer(docs[0])
    args = container["args"]
    assert args[args.index("--executor_class_path") + 1] == "kubeflow.tfjob.TFJobTrainerExecutor"
    # The step only submits and watches: the pipeline image, no GPU, no GPU node.
    assert container["image"] == IMAGE and "accelerator" not in container["resources"]
    assert len(docs) == 1
    settings = json.loads(parameters["custom_config"])[contract.TFJOB_CONFIG_KEY]
    assert settings["workers"] == 3 and settings["gpus"] == 2 and settings["image"] == GPU_IMAGE
    assert settings["node_selector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}


def test_several_workers_need_a_root_the_replicas_can_open(tmp_path):
    result = _compile(tmp_path / "x.yaml", "--pipeline-root", "minio://mlpipeline/v2/artifacts", "--workers", "2")
    assert result.returncode == 2 and "gs://" in result.stderr and "TFJob" in result.stderr
    assert not (tmp_path / "x.yaml").exists()


class _Submitted(Exception):
    """Raised by the recorded create_custom_job: there is no Vertex AI here to run the job."""


def test_several_workers_on_vertex_are_a_customjob_of_tfxs_vertex_extension(tmp_path, monkeypatch):
    """Compiled with TFX's Vertex training extension; its executor's CustomJob request is captured
    where it leaves for Vertex AI (JobServiceClient.create_custom_job) and checked."""
    from google.cloud import aiplatform_v1
    from google.cloud.aiplatform import gapic
    from tfx.types import standard_artifacts
    from tfx.utils import json_utils

    from components.custom_components import VertexTrainerExecutor

    out = tmp_path / "vertex.json"
    result = _compile(out, "--target", "vertex", "--pipeline-root", "gs://bucket/root", "--workers", "3",
                      "--gpus", "2", "--accelerator", "NVIDIA_TESLA_V100", "--vertex-project", "my-project",
                      "--vertex-region", "europe-west4", "--machine-type", "n1-standard-16")
    assert result.returncode == 0, result.stderr[-3000:]
    spec = json.loads(out.read_text())["pipelineSpec"]
    container, parameters = _trainer(spec)
    args = container["args"]
    assert args[args.index("--executor_class_path") + 1] == "components.custom_components.VertexTrainerExecutor"
    assert container["image"] == IMAGE and "accelerator" not in container.get("resources", {})
    config = json.loads(parameters["custom_config"])
    assert config["ai_platform_enable_vertex"] is True and config["ai_platform_vertex_region"] == "europe-west4"

    # The step's executor, with the compiled properties and artifacts as Vertex hands them over.
    requests = []

    def create_custom_job(self, parent, custom_job, **kwargs):
        requests.append(aiplatform_v1.CreateCustomJobRequest(parent=parent, custom_job=custom_job))
        raise _Submitted()

    credentials = tmp_path / "adc.json"   # offline credentials: the client is built, never calls out
    credentials.write_text(json.dumps({"type": "authorized_user", "client_id": "x", "client_secret": "y",
                                       "refresh_token": "z"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
    monkeypatch.setattr(gapic.JobServiceClient, "create_custom_job", create_custom_job)
    inputs = {}
    for key, kind in (("examples", standard_artifacts.Examples), ("transform_graph", standard_artifacts.TransformGraph),
                      ("schema", standard_artifacts.Schema)):
        inputs[key] = [kind()]
        inputs[key][0].uri = f"gs://bucket/root/{key}"
    inputs["examples"][0].split_names = '["train", "test"]'
    outputs = {"model": [standard_artifacts.Model()], "model_run": [standard_artifacts.ModelRun()]}
    outputs["model"][0].uri, outputs["model_run"][0].uri = "gs://bucket/root/model", "gs://bucket/root/model_run"
    with pytest.raises(_Submitted):
        VertexTrainerExecutor().Do(inputs, outputs, dict(parameters, epochs=7))
    (request,) = requests
    assert request.parent == "projects/my-project/locations/europe-west4"
    pools = request.custom_job.job_spec.worker_pool_specs
    assert [p.replica_count for p in pools] == [1, 2]                   # chief, then the other workers
    for pool in pools:
        assert pool.machine_spec.machine_type == "n1-standard-16"
        assert pool.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_TESLA_V100
        assert pool.machine_spec.accelerator_count == 2
        assert pool.container_spec.image_uri == GPU_IMAGE
        command = list(pool.container_spec.command)
        assert command[:5] == ["python", "-m", "tfx.scripts.run_executor", "--executor_class_path",
                               "tfx.components.trainer.executor.GenericExecutor"]
        replica_props = json.loads(command[command.index("--exec-properties") + 1])
        assert json_utils.loads(replica_props["custom_config"])["epochs"] == 7     # folded in by the step
