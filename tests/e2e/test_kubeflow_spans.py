"""Continuous training on Kubeflow: the span pipeline compiled by `fmnist kubeflow compile`, its
recurring run built by kfp's own client code, and two spans run task by task under the open-source
KFP backend's contract (tests/kfp_standin.py) -- no resolver node anywhere."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import NO_CLASS_FLOOR_ARGS, NO_LATENCY_GATE_ARGS, compile_kubeflow
from container_engine import ContainerEngine, image_under_test
from kfp_standin import KfpStandIn
from pipeline.config import PROJECT_ROOT
from schema import contract

ROOT = "minio://mlpipeline/v2/artifacts"
SPANS = PROJECT_ROOT / "data" / "sample-spans"
SPAN_TASKS = {"HoldoutExampleGen", "SpanDrift", "SpanWindow"}


def _compile(out: Path, *extra: str) -> None:
    stdout = compile_kubeflow(out, "--image", image_under_test(), "--preset", "sample-spans",
                              "--pipeline-root", ROOT, *extra)
    assert "span_store" in stdout


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("kfp-spans")
    _compile(d / "spans.yaml", "--data-root", "gs://bucket/data", "--serving-root", "gs://bucket/serving",
             "--set", "span_store=gs://bucket/spans", "--set", "holdout_root=gs://bucket/holdout")
    return d / "spans.yaml", next(yaml.safe_load_all((d / "spans.yaml").read_text()))


def test_span_pipeline_compiles_without_resolvers_and_wires_window_warm_start_and_holdout(compiled):
    _, spec = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert SPAN_TASKS <= set(tasks)
    assert all("container" in e for e in spec["deploymentSpec"]["executors"].values())
    assert spec["root"]["inputDefinitions"]["parameters"]["span_store"]["defaultValue"] == "gs://bucket/spans"

    def producer(task: str, key: str) -> str:
        return tasks[task]["inputs"]["artifacts"][key]["taskOutputArtifact"]["producerTask"]

    assert producer("Transform", "examples") == "SpanWindow"
    assert producer("Evaluator", "examples") == "SpanWindow"
    assert producer("Trainer", "base_model") == "ServedModelBaseline"      # warm start from what is served
    assert producer("SpanWindow", "holdout") == "HoldoutExampleGen"
    assert {"ValidationGate", "SpanDrift"} <= set(tasks["SpanWindow"]["dependentTasks"])
    for task in (contract.EXAMPLE_GEN, "HoldoutExampleGen"):
        container = spec["deploymentSpec"]["executors"][f"{task}_executor"]["container"]
        assert container["args"][0] == "--example-gen-driver" and not tasks[task]["cachingOptions"].get("enableCache")
    for task in ("SpanDrift", "SpanWindow", "ServedModelBaseline"):
        assert tasks[task]["inputs"]["parameters"]["run_token"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
        assert tasks[task]["cachingOptions"].get("enableCache")   # cache keys differ per run anyway
    for task in ("SpanDrift", "SpanWindow"):
        assert tasks[task]["inputs"]["parameters"]["span_store"]["componentInputParameter"] == "span_store"
    assert "span-{SPAN}/" in str(tasks[contract.EXAMPLE_GEN]["inputs"]["parameters"]["input_config"])


def test_recurring_run_request_is_built_by_kfps_own_client_from_the_compiled_file(compiled):
    """kfp.Client.create_recurring_run up to the HTTP call: its own package loader, job config,
    cron trigger and request body (a KFP API server is not reachable here)."""
    import kfp
    import kfp_server_api

    path, _ = compiled
    sent = []

    class RecurringRunService:  # where the HTTP request would leave the client
        def recurring_run_service_create_recurring_run(self, recurring_run):
            sent.append(recurring_run)
            return recurring_run

    client = object.__new__(kfp.Client)
    client._recurring_run_api = RecurringRunService()
    client.create_recurring_run(
        experiment_id="exp-1", job_name="fmnist-spans-hourly", pipeline_package_path=str(path),
        cron_expression="0 0 * * * *", max_concurrency=1, no_catchup=True,
        params={"data_root": "gs://bucket/data", "span_store": "gs://bucket/spans"})
    body = kfp_server_api.ApiClient().sanitize_for_serialization(sent[0])
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 * * * *"
    assert body["max_concurrency"] == 1 and body["no_catchup"] is True
    assert set(body["pipeline_spec"]["root"]["dag"]["tasks"]) >= SPAN_TASKS
    assert body["runtime_config"]["parameters"]["span_store"] == "gs://bucket/spans"


@pytest.fixture(scope="module")
def two_spans(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kfp-spans-run")
    data, serving, store = tmp / "data", tmp / "serving", tmp / "spans"
    shutil.copytree(SPANS / "span-1", data / "span-1")
    shutil.copytree(SPANS / "holdout", data / "holdout")
    spec = tmp / "spans.yaml"
    _compile(spec, "--data-root", str(data), "--serving-root", str(serving), "--set", f"span_store={store}",
             "--set", "warm_start_epochs=1", *NO_LATENCY_GATE_ARGS,
             *NO_CLASS_FLOOR_ARGS)
    standin = KfpStandIn(tmp / "backend", ContainerEngine.from_environment(), volumes=[data, serving, store])
    parameters = {"epochs": 2, "accuracy_threshold": 0.3}
    runs = {1: standin.run(spec, parameters, pipeline_root=ROOT)}
    served_1 = sorted(os.listdir(serving / "fmnist")) if (serving / "fmnist").exists() else []
    shutil.copytree(SPANS / "span-2", data / "span-2")
    runs[2] = standin.run(spec, parameters, pipeline_root=ROOT)
    return standin, runs, served_1, store


def test_two_spans_on_the_open_source_backend_contract(two_spans):
    import json

    standin, runs, served_1, store = two_spans
    assert runs[1].succeeded, runs[1].error
    assert runs[2].succeeded, runs[2].error
    assert len(served_1) == 1

    def props(run, task, key):
        return standin.artifacts[run.tasks[task].outputs[key]]["custom_properties"]

    # The span TFX's driver resolved in the ExampleGen step reached SpanWindow through KFP.
    window = props(runs[2], "SpanWindow", "window")
    assert window["new_span"] == {"double": 2.0} and window["window_spans"] == {"string": "1,2"}
    example_gen_log = runs[2].tasks[contract.EXAMPLE_GEN].log
    assert "span-2" in example_gen_log and "span-1" not in example_gen_log
    assert sorted(os.listdir(store)) == ["span-1", "span-2"]
    assert props(runs[2], "ServedModelBaseline", "baseline")["served_version"] == {"string": served_1[0]}
    assert "baseline_model_id" in props(runs[2], "Evaluator", "blessing")
    run_dir = standin.artifact_dir(runs[2].tasks["Trainer"].outputs["model_run"])
    start = json.loads((run_dir / "warm_start.json").read_text())
    assert start["warm"] is True and start["epochs"] == 1
