"""Compiles the same `create_pipeline(config)` for Kubeflow Pipelines (KFP v2 PipelineSpec).

Data location, serving location, epochs and the accuracy threshold become runtime parameters of
the compiled pipeline, so one compiled file serves every run; the Trainer step requests GPUs, the
other steps none; Beam arguments come from the config (see BENCHMARKS.md / README for runners).
"""
from __future__ import annotations

import logging
import os
from typing import Any

from pipeline.config import PipelineConfig

log = logging.getLogger(__name__)

RUNTIME_PARAMETERS = ("data_root", "serving_model_dir", "epochs", "accuracy_threshold")


def defaults(config: PipelineConfig) -> dict[str, Any]:
    return {"data_root": config.data_root, "serving_model_dir": config.serving_model_dir,
            "epochs": config.epochs, "accuracy_threshold": config.accuracy_threshold}


def build_kubeflow_pipeline(config: PipelineConfig, pipeline_root: str, gpus: int = 1,
                            accelerator: str = "NVIDIA_TESLA_T4", trainer_cpu: float = 4,
                            trainer_memory_gb: float = 16) -> Any:
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    rp = tfx.dsl.experimental.RuntimeParameter
    pipeline = create_pipeline(
        config,
        data_root=rp(name="data_root", ptype=str, default=config.data_root),
        serving_model_dir=rp(name="serving_model_dir", ptype=str, default=config.serving_model_dir),
        epochs=rp(name="epochs", ptype=int, default=config.epochs),
        accuracy_threshold=rp(name="accuracy_threshold", ptype=float, default=config.accuracy_threshold),
        pipeline_root=pipeline_root,
        beam_pipeline_args=list(config.beam_args))
    trainer = next(c for c in pipeline.components if c.id == "Trainer")
    resources = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
        cpu_limit=trainer_cpu, memory_limit=trainer_memory_gb)
    if gpus:
        resources.accelerator.type = accelerator
        resources.accelerator.count = gpus
    trainer.with_platform_config(resources)
    return pipeline


def compile_pipeline(config: PipelineConfig, image: str, pipeline_root: str, output: str,
                     **resources: Any) -> str:
    from tfx import v1 as tfx

    pipeline = build_kubeflow_pipeline(config, pipeline_root, **resources)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output)), output_filename=os.path.basename(output))
    # The config's values become the parameters' defaults in the spec's runtimeConfig, so a run
    # needs no parameter at all and any of them can be overridden when it is submitted.
    runner.run(pipeline, parameter_values=defaults(config))
    log.info("wrote %s", output)
    return output
