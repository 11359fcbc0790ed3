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

from pipeline.config import ConfigError, PipelineConfig
from schema import contract

log = logging.getLogger(__name__)

RUNTIME_PARAMETERS = ("data_root", "serving_model_dir", "epochs", "accuracy_threshold")
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


def defaults(config: PipelineConfig) -> dict[str, Any]:
    values = {"data_root": config.data_root, "serving_model_dir": config.serving_model_dir,
              "epochs": config.training.epochs, "accuracy_threshold": config.accuracy_threshold}
    if config.spans:  # continuous training: where accepted spans are kept (components/spans.py)
        values["span_store"] = config.span_store_dir
    return values


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
                            trainer_cpu: float = 4, trainer_memory_gb: float = 16) -> Any:
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx import v1 as tfx

    from components.baseline import KFP_RUN_ID_PLACEHOLDER
    from pipeline.pipeline import create_pipeline

    rp = tfx.dsl.experimental.RuntimeParameter
    pipeline = create_pipeline(
        config,
        data_root=rp(name="data_root", ptype=str, default=config.data_root),
        serving_model_dir=rp(name="serving_model_dir", ptype=str, default=config.serving_model_dir),
        epochs=rp(name="epochs", ptype=int, default=config.training.epochs),
        accuracy_threshold=rp(name="accuracy_threshold", ptype=float, default=config.accuracy_threshold),
        span_store=rp(name="span_store", ptype=str, default=config.span_store_dir) if config.spans else None,
        pipeline_root=pipeline_root,
        beam_pipeline_args=list(config.beam_args),
        run_token=KFP_RUN_ID_PLACEHOLDER)
    trainer = next(c for c in pipeline.components if c.id == TRAINER_TASK)
    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
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
                     gpu_node_selector: dict[str, str] | None = None) -> str:
    """Write the compiled pipeline for `target` to `output`; returns the path."""
    from tfx import v1 as tfx

    check_pipeline_root(pipeline_root, target)
    if gpus < 0:
        raise ConfigError(f"gpus {gpus}: must be >= 0")
    pipeline = build_kubeflow_pipeline(config, pipeline_root, target=target, gpus=gpus,
                                       accelerator=accelerator)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, default_commands=ENTRYPOINT, use_pipeline_spec_2_1=True))
    job = runner.run(pipeline, parameter_values=defaults(config), write_out=False)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        if target == "vertex":
            json.dump(job, f, indent=2, sort_keys=True)
        else:
            selector = gpu_node_selector or {GKE_ACCELERATOR_LABEL: gke_accelerator_label(accelerator)}
            yaml.safe_dump_all(_to_open_source_spec(job, gpus, selector), f, sort_keys=False)
    log.info("wrote %s (%s)", output, target)
    return output
