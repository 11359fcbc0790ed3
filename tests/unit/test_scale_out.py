"""Beyond one machine (README, "Scaling out"): the same create_pipeline compiled for Kubeflow with
the Beam arguments of Dataflow, Flink and Spark, each reaching every Beam-based step's command.

Running those services needs a cloud project or a cluster; what this machine can check is that the
compiled pipeline hands each step exactly the arguments the README tells users to pass.
"""
from __future__ import annotations

import shlex

import pytest
import yaml

from pipeline.config import load_config
from schema import contract

BEAM_STEPS = (contract.EXAMPLE_GEN, contract.STATISTICS_GEN, contract.TRANSFORM, contract.EVALUATOR)
RUNNERS = {
    "dataflow": "--runner=DataflowRunner --project=my-project --region=europe-west4 "
                "--temp_location=gs://bucket/tmp --experiments=use_runner_v2 "
                "--sdk_container_image=gcr.io/my-project/fmnist-tfx:1",
    "flink": "--runner=PortableRunner --job_endpoint=beam-flink-job-server:8099 --environment_type=EXTERNAL "
             "--environment_config=localhost:50000 --parallelism=8 --experiments=pre_optimize=all",
    "spark": "--runner=SparkRunner --spark_master_url=spark://spark-master:7077 --environment_type=DOCKER "
             "--environment_config=gcr.io/my-project/fmnist-tfx:1",
}


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_compiled_pipeline_passes_the_runner_args_to_every_beam_step(tmp_path, runner):
    from kubeflow.runner import compile_pipeline

    args = tuple(shlex.split(RUNNERS[runner]))
    config = load_config("default", overrides={"beam_args": args, "data_root": "gs://bucket/data",
                                               "serving_root": "gs://bucket/serving"})
    out = compile_pipeline(config, "registry.example.com/fmnist:test", "minio://mlpipeline/v2/artifacts",
                           str(tmp_path / "fmnist.yaml"))
    spec = next(d for d in yaml.safe_load_all(open(out)) if d)
    executors = spec["deploymentSpec"]["executors"]
    for step in BEAM_STEPS:
        command = next(e["container"]["args"] for name, e in executors.items() if step in name)
        for arg in args:
            assert arg in command, (runner, step, arg)
    # The local default (DirectRunner) is gone: one runner per compiled pipeline.
    everything = " ".join(" ".join(e["container"]["args"]) for e in executors.values())
    assert "--direct_running_mode" not in everything


def test_local_default_is_beams_in_memory_direct_runner_and_tfx_packages_nothing(monkeypatch):
    """The default `beam_args` are empty: Beam's DirectRunner defaults (in_memory, one worker, the
    mode BENCHMARKS.md "Scale" chose), and TFX's Beam executors then skip building a tfx_ephemeral
    sdist (2 s, 52 MB under /tmp per component). With the former explicit DirectRunner flags they
    built one -- the same check on those arguments shows the difference is real. TFX's behaviour as
    its source has it: BaseBeamExecutor.__init__ calls dependency_utils.make_beam_dependency_flags
    on non-empty Beam arguments, which builds the sdist unless a dependency flag is among them
    (tfx/dsl/components/base/base_beam_executor.py, tfx/utils/dependency_utils.py, tfx 1.21)."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
    from tfx.components.statistics_gen.executor import Executor as StatisticsGenExecutor
    from tfx.utils import dependency_utils

    beam_args = list(load_config("default").beam_args)
    options = PipelineOptions(beam_args).view_as(DirectOptions)
    assert (options.direct_running_mode, options.direct_num_workers) == ("in_memory", 1)

    built: list[str] = []
    monkeypatch.setattr(dependency_utils, "build_ephemeral_package",
                        lambda: built.append("sdist") or "/nowhere/tfx_ephemeral.tar.gz")

    def executor_args(args: list[str]) -> list[str]:
        executor = StatisticsGenExecutor(StatisticsGenExecutor.Context(beam_pipeline_args=list(args)))
        return executor._beam_pipeline_args

    assert not any(a.startswith("--extra_package") for a in executor_args(beam_args)) and built == []
    explicit = executor_args(["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert "--extra_package=/nowhere/tfx_ephemeral.tar.gz" in explicit and built == ["sdist"]
