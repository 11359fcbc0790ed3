"""Compiles the same `create_pipeline(config)` for Kubeflow Pipelines.

Two targets, one pipeline definition:

* `kfp` (default): a PipelineSpec YAML for the open-source KFP 2.x backend, the file that
  `kfp.Client().upload_pipeline` / `create_run_from_pipeline_package` and the KFP UI take. What the
  open-source backend needs and TFX's KubeflowV2DagRunner does not give by default:
  - pipeline-spec schema 2.1.0 (the API server refuses anything else:
    backend/src/apiserver/template/v2_template.go), typed parameters, and the runtime parameters'
    defaults inside the spec (`root.inputDefinitions.parameters.*.defaultValue`), because the API
    server refuses a parameter with neither a value nor a default;
  - no `lifecycle.preCacheCheck` (never run by the open-source driver): ExampleGen runs TFX's
    span/fingerprint driver itself (kubeflow/entrypoint.py --example-gen-driver) and its task is
    not cached, because its only inputs are a path and patterns, so KFP's cache key
    (backend/src/v2/cacheutils/cache.go) cannot see a changed or added file;
  - GPUs as a Kubernetes resource limit (`nvidia.com/gpu`, what backend/src/v2/driver/driver.go
    puts into the pod's limits) plus a node selector in the kfp-kubernetes platform spec.
* `vertex`: the PipelineJob JSON for Vertex AI Pipelines (accelerator type names such as
  NVIDIA_TESLA_T4, the ExampleGen driver as Vertex's pre-cache check).

GPUs and workers (`--gpus N --workers W`, N GPUs per worker):
* W = 1: the Trainer step itself requests N GPUs (above) and runs in the GPU image
  (`<image>-gpu`, kubeflow/Dockerfile.gpu); run_fn mirrors over the pod's GPUs.
* W > 1 on Vertex: TFX's Vertex training extension's executor submits a CustomJob of worker pools
  chief (1) + workers (W-1), each replica on `--machine-type` with N accelerators and the image
  (components/custom_components.py, VertexTrainerExecutor).
* W > 1 on open-source KFP: the step submits a Training Operator TFJob, Chief + W-1 Workers
  (kubeflow/tfjob.py); the step itself needs no GPU.

Every container runs `python -m kubeflow.entrypoint`, which adapts what each backend's launcher
hands over to TFX's own v2 entrypoint (see that module).
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

import yaml

from kubeflow import parameters
from pipeline.config import ConfigError, PipelineConfig
from schema import contract

log = logging.getLogger(__name__)

TARGETS = ("kfp", "vertex")
ENTRYPOINT = ["python", "-m", "kubeflow.entrypoint"]
EXAMPLE_GEN_DRIVER_FLAG = "--example-gen-driver"
EXAMPLE_GEN_TASK = contract.EXAMPLE_GEN
HOLDOUT_EXAMPLE_GEN_TASK = contract.HOLDOUT_EXAMPLE_GEN   # span mode: the fixed holdout (pipeline/pipeline.py)
TRAINER_TASK = contract.TRAINER
# What the open-source launcher can download from / upload to (LocalPathForURI in
# backend/src/v2/component/launcher_v2.go); Vertex AI only reads and writes Cloud Storage.
ROOT_SCHEMES = {"kfp": ("minio://", "s3://", "gs://"), "vertex": ("gs://",)}
KFP_GPU_RESOURCE = "nvidia.com/gpu"
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
GPU_IMAGE_SUFFIX = "-gpu"              # Makefile image-gpu: $(IMAGE)-gpu
DEFAULT_MACHINE_TYPE = "n1-standard-8"  # a Vertex worker's machine (T4 and V100 attach to N1 machines)
DEFAULT_VERTEX_REGION = "us-central1"
# The step that only submits and watches a TFJob needs little.
LAUNCHER_CPU, LAUNCHER_MEMORY_GB = 1, 2


def gpu_image(image: str) -> str:
    """The GPU image's tag for `image` (built FROM it by `make image-gpu`): name:tag -> name:tag-gpu."""
    return image + GPU_IMAGE_SUFFIX if ":" in image.rsplit("/", 1)[-1] else image + ":latest" + GPU_IMAGE_SUFFIX


def vertex_training_args(project: str, image: str, workers: int, gpus: int, accelerator: str,
                         machine_type: str) -> dict[str, Any]:
    """custom_config[TRAINING_ARGS_KEY] of TFX's Vertex extension: a CustomJob's job_spec whose worker
    pool 0 is the chief (one replica) and pool 1 the other W-1 workers (Vertex's TF_CONFIG calls
    pool 0 "chief", pool 1 "worker"); same machine, accelerators and image in both. TFX fills in
    each pool's container command (training_clients.py, VertexJobClient.create_training_job)."""
    machine: dict[str, Any] = {"machine_type": machine_type}
    if gpus:
        machine.update(accelerator_type=accelerator, accelerator_count=gpus)

    def pool(replicas: int) -> dict[str, Any]:
        return {"machine_spec": dict(machine), "replica_count": replicas, "container_spec": {"image_uri": image}}

    pools = [pool(1)] + ([pool(workers - 1)] if workers > 1 else [])
    return {"project": project, "job_spec": {"worker_pool_specs": pools}}


def check_pipeline_root(pipeline_root: str, target: str) -> None:
    """Refuse, at compile time, a pipeline root the target's launcher cannot work with."""
    if target not in TARGETS:
        raise ConfigError(f"target {target!r}: must be one of {', '.join(TARGETS)}")
    schemes = ROOT_SCHEMES[target]
    if not pipeline_root.startswith(schemes) or not re.match(r"^[a-z0-9]+://[^/]+", pipeline_root):
        where = "open-source Kubeflow Pipelines" if target == "kfp" else "Vertex AI Pipelines"
        raise ConfigError(
            f"pipeline root {pipeline_root!r}: {where} stores artifacts in object storage; use "
            f"{' or '.join(s + 'BUCKET/PATH' for s in schemes)}"
            + (" (minio://mlpipeline/v2/artifacts is the default of a KFP install)" if target == "kfp" else ""))


def gke_accelerator_label(accelerator: str) -> str:
    """NVIDIA_TESLA_T4 -> nvidia-tesla-t4, GKE's value of cloud.google.com/gke-accelerator."""
    return accelerator.lower().replace("_", "-")


def build_kubeflow_pipeline(config: PipelineConfig, pipeline_root: str, *, target: str = "kfp",
                            gpus: int = 0, accelerator: str = "NVIDIA_TESLA_T4",
                            trainer_cpu: float = 4, trainer_memory_gb: float = 16, workers: int = 1,
                            trainer_image: str = "", node_selector: dict[str, str] | None = None,
                            vertex_project: str = "", vertex_region: str = DEFAULT_VERTEX_REGION,
                            machine_type: str = DEFAULT_MACHINE_TYPE) -> Any:
    from kfp.pipeline_spec import pipeline_spec_pb2

    from components.baseline import KFP_RUN_ID_PLACEHOLDER
    from pipeline.pipeline import create_pipeline

    pipeline = create_pipeline(config, pipeline_root=pipeline_root, beam_pipeline_args=list(config.beam_args),
                               run_token=KFP_RUN_ID_PLACEHOLDER)
    parameters.apply(pipeline, config)
    trainer = next(c for c in pipeline.components if c.id == TRAINER_TASK)
    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
    if workers > 1:
        _launch_workers(trainer, target, workers=workers, gpus=gpus, accelerator=accelerator, image=trainer_image,
                        node_selector=node_selector or {}, cpu=trainer_cpu, memory_gb=trainer_memory_gb,
                        vertex_project=vertex_project, vertex_region=vertex_region, machine_type=machine_type)
        # The step only submits and watches the job: no GPU, a small pod.
        gpus, trainer_cpu, trainer_memory_gb = 0, LAUNCHER_CPU, LAUNCHER_MEMORY_GB
    if target == "kfp":  # string quantities, read by the open-source driver (driver.go)
        resources = spec(resource_cpu_limit=f"{trainer_cpu:g}",
                         resource_memory_limit=f"{trainer_memory_gb:g}G")
        if gpus:
            resources.accelerator.resource_type = KFP_GPU_RESOURCE
            resources.accelerator.resource_count = str(gpus)
    else:  # Vertex AI's machine-spec fields
        resources = spec(cpu_limit=trainer_cpu, memory_limit=trainer_memory_gb)
        if gpus:
            resources.accelerator.type = accelerator
            resources.accelerator.count = gpus
    trainer.with_platform_config(resources)
    return pipeline


def _launch_workers(trainer: Any, target: str, *, workers: int, gpus: int, accelerator: str, image: str,
                    node_selector: dict[str, str], cpu: float, memory_gb: float, vertex_project: str,
                    vertex_region: str, machine_type: str) -> None:
    """Turn the Trainer step into the launcher of `workers` replicas: its executor and the launcher's
    settings in its custom_config (which run_fn ignores: contract.LAUNCHER_KEYS)."""
    from tfx.dsl.components.base import executor_spec
    from tfx.extensions.google_cloud_ai_platform import constants as vertex_constants
    from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor
    from tfx.utils import json_utils

    from components.custom_components import VertexTrainerExecutor
    from kubeflow.tfjob import TFJobSettings, TFJobTrainerExecutor

    custom_config = json_utils.loads(trainer.exec_properties["custom_config"])
    if target == "vertex":
        if not vertex_project:
            raise ConfigError("--workers > 1 on Vertex AI: --vertex-project is required (the CustomJob's project)")
        custom_config.update({
            vertex_trainer_executor.TRAINING_ARGS_KEY: vertex_training_args(
                vertex_project, image, workers, gpus, accelerator, machine_type),
            vertex_constants.ENABLE_VERTEX_KEY: True,
            vertex_constants.VERTEX_REGION_KEY: vertex_region})
        executor_class: type = VertexTrainerExecutor
    else:
        custom_config[contract.TFJOB_CONFIG_KEY] = TFJobSettings(
            image=image, workers=workers, gpus=gpus, node_selector=dict(node_selector) if gpus else {},
            cpu=f"{cpu:g}", memory=f"{memory_gb:g}G").to_dict()
        executor_class = TFJobTrainerExecutor
    trainer.exec_properties["custom_config"] = json_utils.dumps(custom_config)
    trainer.executor_spec = executor_spec.ExecutorClassSpec(executor_class)


def _to_open_source_spec(job: dict[str, Any], gpus: int, node_selector: dict[str, str]) -> list[dict]:
    """PipelineJob (what TFX writes) -> [PipelineSpec, PlatformSpec] for the open-source backend."""
    spec = job["pipelineSpec"]
    # Recorded like the KFP SDK does; the open-source backend itself takes the root from the run
    # (create_run_from_pipeline_package(pipeline_root=...)) or its kfp-launcher config map.
    spec["defaultPipelineRoot"] = job["runtimeConfig"]["gcsOutputDirectory"]
    values = job["runtimeConfig"].get("parameterValues", {})
    for name, definition in spec["root"]["inputDefinitions"]["parameters"].items():
        value = values[name]
        if definition["parameterType"] == "NUMBER_INTEGER":
            value = int(value)
        definition["defaultValue"] = value
    executors = spec["deploymentSpec"]["executors"]
    # Every ExampleGen (span mode adds HoldoutExampleGen): TFX's driver runs in the step, no cache.
    for task in (EXAMPLE_GEN_TASK, HOLDOUT_EXAMPLE_GEN_TASK):
        if f"{task}_executor" not in executors:
            continue
        example_gen = executors[f"{task}_executor"]["container"]
        example_gen.pop("lifecycle", None)
        example_gen["args"] = [EXAMPLE_GEN_DRIVER_FLAG] + example_gen["args"]
        spec["root"]["dag"]["tasks"][task]["cachingOptions"] = {"enableCache": False}
    documents = [spec]
    if gpus:
        documents.append({"platforms": {"kubernetes": {"deploymentSpec": {"executors": {
            f"{TRAINER_TASK}_executor": {"nodeSelector": {"labels": dict(node_selector)}}}}}}})
    return documents


def compile_pipeline(config: PipelineConfig, image: str, pipeline_root: str, output: str, *,
                     target: str = "kfp", gpus: int = 0, accelerator: str = "NVIDIA_TESLA_T4",
                     gpu_node_selector: dict[str, str] | None = None, workers: int = 1,
                     gpu_image_name: str = "", vertex_project: str = "",
                     vertex_region: str = DEFAULT_VERTEX_REGION, machine_type: str = DEFAULT_MACHINE_TYPE) -> str:
    """Write the compiled pipeline for `target` to `output`; returns the path.

    With gpus > 0 the Trainer (or its replicas) runs in `gpu_image_name`, default gpu_image(image)."""
    from tfx import v1 as tfx
    from tfx.orchestration.kubeflow.v2 import pipeline_builder

    check_pipeline_root(pipeline_root, target)
    if gpus < 0:
        raise ConfigError(f"gpus {gpus}: must be >= 0")
    if workers < 1:
        raise ConfigError(f"workers {workers}: must be >= 1")
    if workers > 1 and target == "kfp" and not pipeline_root.startswith("gs://"):
        raise ConfigError(
            f"--workers {workers} on open-source KFP: the TFJob's replicas read Transform's output and write the "
            f"model themselves, through TensorFlow's file systems, which open gs:// but not {pipeline_root!r}; "
            "use --pipeline-root gs://BUCKET/PATH (kubeflow/tfjob.py)")
    trainer_image = (gpu_image_name or gpu_image(image)) if gpus else image
    selector = gpu_node_selector or {GKE_ACCELERATOR_LABEL: gke_accelerator_label(accelerator)}
    pipeline = build_kubeflow_pipeline(config, pipeline_root, target=target, gpus=gpus,
                                       accelerator=accelerator, workers=workers, trainer_image=trainer_image,
                                       node_selector=selector, vertex_project=vertex_project,
                                       vertex_region=vertex_region, machine_type=machine_type)
    # The step runs in the GPU image only when it trains on GPUs itself (one worker).
    images: str | dict[str, str] = image
    if gpus and workers == 1:
        images = {pipeline_builder.DEFAULT_IMAGE_PATH_KEY: image, TRAINER_TASK: trainer_image}
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=images, default_commands=ENTRYPOINT, use_pipeline_spec_2_1=True))
    job = runner.run(pipeline, parameter_values=parameters.defaults(config), write_out=False)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        if target == "vertex":
            json.dump(job, f, indent=2, sort_keys=True)
        else:
            step_gpus = gpus if workers == 1 else 0
            yaml.safe_dump_all(_to_open_source_spec(job, step_gpus, selector), f, sort_keys=False)
    log.info("wrote %s (%s)", output, target)
    return output
