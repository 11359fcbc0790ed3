"""The built pipeline image (kubeflow/Dockerfile, built by `make test` through tools/image) and the
KFP stand-in's pod and object-store behaviour, on small hand-written pipelines that run in seconds.

The full pipeline in containers is tests/e2e/test_kubeflow_standin.py and test_kubeflow_spans.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from container_engine import ContainerEngine, image_under_test
from kfp_standin import KfpStandIn, Rejected, go_format_float
from kubeflow.runner import ENTRYPOINT, gpu_image
from pipeline.config import PROJECT_ROOT

ROOT = "minio://mlpipeline/v2/artifacts"
STEP_SECONDS = 3   # how long each of two independent steps runs, long enough to see them overlap


@pytest.fixture(scope="module")
def engine() -> ContainerEngine:
    return ContainerEngine.from_environment()


@pytest.mark.parametrize("image, lock_file", [(image_under_test(), "requirements.lock"),
                                              (gpu_image(image_under_test()), "requirements-gpu.lock")])
def test_image_packages_are_exactly_the_lock_plus_the_project(engine, image, lock_file):
    """The pipeline image holds requirements.lock, the Trainer's GPU image requirements-gpu.lock."""
    exited = engine.run(image, entrypoint=["pip", "freeze"])
    assert exited.status == 0, exited.log
    lines = [line for line in exited.log.splitlines() if line and not line.startswith("#")]
    project = [line for line in lines if line.startswith("-e ") or line.startswith("fmnist-tfx")]
    assert len(project) == 1 and "/pipeline" in project[0], project   # the project, installed from /pipeline
    lock = [line for line in (PROJECT_ROOT / lock_file).read_text().splitlines()
            if line and not line.startswith("#")]
    # pip freeze leaves out pip itself (and setuptools/wheel unless --all): compare like with like.
    freeze_all = engine.run(image, entrypoint=["pip", "freeze", "--all", "--exclude-editable"])
    frozen = sorted(line for line in freeze_all.log.splitlines() if line and not line.startswith(("#", "pip==")))
    assert frozen == sorted(line for line in lock if not line.startswith("pip==")), \
        {"missing": sorted(set(lock) - set(frozen)), "extra": sorted(set(frozen) - set(lock))}


def test_image_entrypoint_env_workdir_and_what_it_says_about_tf_serving(engine):
    config = engine.image(image_under_test())["Config"]
    assert config["Entrypoint"] == ENTRYPOINT            # what kubeflow/runner.py compiles into each step
    assert config["WorkingDir"] == "/pipeline"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["TF_USE_LEGACY_KERAS"] == "1" and env["PATH"].startswith("/usr/local/bin")
    exited = engine.run(image_under_test(), entrypoint=["sh", "-c",
                        "cat /usr/local/share/fmnist/tf-serving; command -v tensorflow_model_server || true"])
    assert exited.status == 0, exited.log
    if env["FMNIST_TF_SERVING"] == "scratch":
        assert exited.log.startswith("none: built with TF_SERVING=scratch")
        assert "/tensorflow_model_server" not in exited.log
    else:
        assert exited.log.startswith(f"tensorflow_model_server from {env['FMNIST_TF_SERVING']}")
        assert "/usr/local/bin/tensorflow_model_server" in exited.log


def test_numbers_reach_commands_as_go_formats_them():
    assert [go_format_float(v) for v in (1e-05, 3.0, 0.5, 100.0, 1e21, -2.5e-7, 123456789.125)] == [
        "0.00001", "3", "0.5", "100", "1000000000000000000000", "-0.00000025", "123456789.125"]


def _step(code: str, *args: str, outputs: tuple[str, ...] = (), inputs: dict[str, str] | None = None,
          parameters: tuple[str, ...] = ()) -> tuple[dict, dict, dict]:
    """(component, executor, task) of a step running `python -c CODE ARGS...` in the image."""
    component: dict = {"executorLabel": ""}
    if outputs:
        component["outputDefinitions"] = {"artifacts": {o: {"artifactType": {
            "schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}} for o in outputs}}
    task: dict = {"inputs": {}}
    if inputs:
        component["inputDefinitions"] = {"artifacts": {k: {"artifactType": {
            "schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}} for k in inputs}}
        task["inputs"]["artifacts"] = {k: {"taskOutputArtifact": {"producerTask": producer, "outputArtifactKey": "out"}}
                                       for k, producer in inputs.items()}
    if parameters:
        component.setdefault("inputDefinitions", {})["parameters"] = {p: {"parameterType": "NUMBER_DOUBLE"}
                                                                      for p in parameters}
        task["inputs"]["parameters"] = {p: {"componentInputParameter": p} for p in parameters}
    executor = {"container": {"image": image_under_test(), "command": ["python", "-c", code], "args": list(args)}}
    return component, executor, task


def _pipeline(path: Path, steps: dict[str, tuple[dict, dict, dict]], parameters: dict[str, float]) -> Path:
    spec: dict = {"pipelineInfo": {"name": "standin-checks"}, "schemaVersion": "2.1.0", "sdkVersion": "kfp-2.16.0",
                  "components": {}, "deploymentSpec": {"executors": {}}, "root": {"dag": {"tasks": {}}}}
    if parameters:
        spec["root"]["inputDefinitions"] = {"parameters": {k: {"parameterType": "NUMBER_DOUBLE", "defaultValue": v}
                                                           for k, v in parameters.items()}}
    for name, (component, executor, task) in steps.items():
        component["executorLabel"] = f"exec-{name}"
        spec["components"][f"comp-{name}"] = component
        spec["deploymentSpec"]["executors"][f"exec-{name}"] = executor
        spec["root"]["dag"]["tasks"][name] = {"componentRef": {"name": f"comp-{name}"}, "taskInfo": {"name": name},
                                              **task}
    path.write_text(yaml.safe_dump(spec))
    return path


WRITE_WITH_EMPTY_DIR = f"""import os, sys, time
time.sleep({STEP_SECONDS})
out = sys.argv[1]
os.makedirs(os.path.join(out, "empty"))
os.makedirs(os.path.join(out, "full"))
open(os.path.join(out, "full", "file.txt"), "w").write("kept")
for leftover in ("/tmp/left-by-an-earlier-step", os.path.expanduser("~/left-by-an-earlier-step")):
    open(leftover, "w").write("a pod's disk is its own")
"""
LIST_INPUTS = f"""import os, sys
for root in sys.argv[2:]:
    for parent, dirs, files in os.walk(root):
        print("seen", os.path.relpath(parent, root), sorted(dirs), sorted(files))
print("rate", sys.argv[1])
print("leftovers", [p for p in ("/tmp/left-by-an-earlier-step", os.path.expanduser("~/left-by-an-earlier-step"))
                    if os.path.exists(p)])
print("checkout", os.path.exists({str(PROJECT_ROOT)!r}), "cwd", os.getcwd())
"""
OUTSIDE_THE_BUCKET = """import json, os, sys
executor_input = json.loads(sys.argv[1])
output_file = executor_input["outputs"]["outputFile"]
os.makedirs(os.path.dirname(output_file), exist_ok=True)
with open(output_file, "w") as f:
    json.dump({"artifacts": {"out": {"artifacts": [{"uri": "minio://another-bucket/out"}]}}}, f)
"""


@pytest.fixture(scope="module")
def small_run(engine, tmp_path_factory):
    """a and b independent (each writes an empty and a full directory and files in /tmp and $HOME,
    after a pause), c reads both and prints the run parameter `rate` = 1e-05, what it finds of
    a's and b's files and of the checkout."""
    tmp = tmp_path_factory.mktemp("kfp-small")
    steps = {
        "a": _step(WRITE_WITH_EMPTY_DIR, "{{$.outputs.artifacts['out'].path}}", outputs=("out",)),
        "b": _step(WRITE_WITH_EMPTY_DIR, "{{$.outputs.artifacts['out'].path}}", outputs=("out",)),
        "c": _step(LIST_INPUTS, "{{$.inputs.parameters['rate']}}", "{{$.inputs.artifacts['x'].path}}",
                   "{{$.inputs.artifacts['y'].path}}", inputs={"x": "a", "y": "b"}, parameters=("rate",)),
    }
    standin = KfpStandIn(tmp / "backend", engine, max_parallel=2)
    spec = _pipeline(tmp / "small.yaml", steps, {"rate": 0.5})
    return standin, spec, standin.run(spec, {"rate": 1e-05}, pipeline_root=ROOT)


def test_independent_steps_run_at_the_same_time(small_run):
    _, _, run = small_run
    assert run.succeeded, run.error
    a, b = run.tasks["a"], run.tasks["b"]
    assert a.started < b.finished and b.started < a.finished, (a, b)   # the two intervals overlap
    assert run.tasks["c"].started >= max(a.finished, b.finished)


def test_an_empty_output_directory_does_not_reach_the_next_step(small_run):
    _, _, run = small_run
    log = run.tasks["c"].log
    assert "seen . ['full'] []" in log and "seen full [] ['file.txt']" in log, log
    assert "empty" not in log


def test_each_step_has_its_own_tmp_and_home_and_no_checkout(small_run):
    _, _, run = small_run
    log = run.tasks["c"].log
    assert "leftovers []" in log                            # a and b wrote into /tmp and $HOME
    assert "checkout False cwd /pipeline" in log, log       # the image's WORKDIR, not the repository


def test_number_parameters_are_written_as_the_launcher_writes_them(small_run):
    _, _, run = small_run
    assert "rate 0.00001" in run.tasks["c"].log


def test_input_artifacts_carry_what_kfps_metadata_client_records(small_run):
    _, _, run = small_run
    metadata = run.tasks["c"].executor_input["inputs"]["artifacts"]["x"]["artifacts"][0]["metadata"]
    assert metadata["display_name"] == "out"
    assert json.loads(metadata["store_session_info"])["Provider"] == "minio"


def test_a_run_parameter_the_pipeline_does_not_declare_is_refused(small_run):
    standin, spec, _ = small_run
    with pytest.raises(Rejected, match=r"parameter\(s\) provided are not required by pipeline: ratee"):
        standin.run(spec, {"ratee": 0.1}, pipeline_root=ROOT)


def test_an_output_uri_outside_the_pipeline_roots_bucket_fails_the_task(engine, tmp_path):
    steps = {"d": _step(OUTSIDE_THE_BUCKET, "{{$}}", outputs=("out",))}
    standin = KfpStandIn(tmp_path / "backend", engine)
    run = standin.run(_pipeline(tmp_path / "outside.yaml", steps, {}), pipeline_root=ROOT)
    assert not run.succeeded and run.tasks["d"].state == "FAILED"
    assert "'minio://another-bucket/out' does not have expected bucket prefix 'minio://mlpipeline/v2/artifacts'" \
        in run.tasks["d"].log
