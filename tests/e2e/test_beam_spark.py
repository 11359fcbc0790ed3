"""The pipeline's Beam steps on a real Apache Spark standalone cluster (tools/spark: a master, two
workers as separate JVMs, a Beam worker pool beside each, Beam's Spark job server), compared with the
DirectRunner run of the same preset: the same examples and statistics, a model as good, and the
work seen in Spark's own JSON API on both workers; and the compiled Kubeflow pipeline on the cluster
with a gs:// pipeline root on a GCS stand-in. The module's own cluster and store, on ports of their own.
"""
from __future__ import annotations

import pytest

from beam_equivalence import (
    Gcs,
    LocalCluster,
    assert_kubeflow_run_wrote_directrunners_data_to_gcs,
    assert_same_data_as_directrunner,
    run_kubeflow_on_cluster,
)
from conftest import NO_LATENCY_GATE
from pipeline import runner
from pipeline.config import load_config
from schema import contract

BUDGET = 45 * 60  # seconds for the whole module, cluster up to down (see the fixture)
PORTS = {"SPARK_MASTER_PORT": "17077", "SPARK_UI_PORT": "18080", "BEAM_JOB_PORT": "18199",
         "BEAM_WORKER_POOL_PORT": "50110"}
GCS_PORTS = {"GCS_EMULATOR_PORT": "14444", "GCS_GATEWAY_PORT": "14481"}
STEPS = (contract.EXAMPLE_GEN, contract.STATISTICS_GEN, contract.TRANSFORM, contract.EVALUATOR)


class Spark(LocalCluster):
    """The running cluster: its Beam arguments and the master's JSON."""

    script, state_variable = "spark", "SPARK_STATE"

    def master(self) -> dict:
        return self.get_json(f"http://127.0.0.1:{PORTS['SPARK_UI_PORT']}/json/")

    def ran_on_each_worker(self) -> list[set[str]]:
        """The applications each worker ran executors for (each worker's own JSON)."""
        ran_on = []
        for worker in self.master()["workers"]:
            ran = self.get_json(worker["webuiaddress"] + "/json/")
            ran_on.append({e["appid"] for e in ran["finishedexecutors"] + ran["executors"]})
        return ran_on

    def assert_finished_on_both_workers(self, apps: list[dict]) -> None:
        assert len(apps) == len(STEPS) and all(a["state"] == "FINISHED" for a in apps), apps
        ran_on = self.ran_on_each_worker()
        assert len(ran_on) == 2
        for app in apps:
            assert all(app["id"] in ids for ids in ran_on), (app["id"], ran_on)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    with Gcs(tmp_path_factory.mktemp("gcs-state"), GCS_PORTS).running(budget_seconds=BUDGET) as store:
        yield store


@pytest.fixture(scope="module")
def spark(tmp_path_factory, gcs):
    # The module takes ~8 min on 2 idle cores (~30 with its Kubeflow run); the budget bounds a
    # cluster that stops making progress.
    with gcs.cluster(Spark, PORTS, tmp_path_factory, budget_seconds=BUDGET) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def spark_run(spark, tmp_path_factory):
    before = {a["id"] for a in spark.master()["completedapps"]}
    config = load_config("sample", overrides={"output_root": str(tmp_path_factory.mktemp("spark-run")),
                                              **NO_LATENCY_GATE, "beam_args": spark.tool("args")})
    summary = spark.run(config)
    apps = [a for a in spark.master()["completedapps"] if a["id"] not in before]
    return config, summary, apps


def test_the_pipeline_runs_on_spark_and_pushes_a_model_as_good_as_directrunners(spark_run, sample_run):
    config, summary, _ = spark_run
    assert summary.failures == [] and runner.exit_code(summary) == runner.EXIT_OK, summary.failures
    accuracy = summary.metrics["overall"][contract.ACCURACY_METRIC]
    assert accuracy >= config.accuracy_threshold
    assert abs(accuracy - sample_run[1].metrics["overall"][contract.ACCURACY_METRIC]) < 0.05


def test_same_examples_and_statistics_as_directrunner(spark_run, sample_run):
    assert_same_data_as_directrunner(spark_run[1], sample_run[1])


def test_every_beam_step_was_a_spark_application_with_executors_on_both_workers(spark_run, spark):
    _, summary, apps = spark_run
    assert all(summary.component(step).state == "COMPLETE" for step in STEPS)
    spark.assert_finished_on_both_workers(apps)


@pytest.mark.own_target   # `make test-spark` only: ~23 min on 2 cores (Spark's Evaluator alone ~10)
def test_the_kubeflow_pipeline_runs_its_beam_steps_on_spark_with_a_gcs_pipeline_root(spark, gcs, sample_run,
                                                                                    tmp_path, monkeypatch):
    """As on Flink (beam_equivalence.run_kubeflow_on_cluster): each Beam step a finished Spark
    application with executors on both workers; the workers' statistics on GCS equal DirectRunner's."""
    before = {a["id"] for a in spark.master()["completedapps"]}
    standin, run, serving = run_kubeflow_on_cluster(tuple(spark.tool("args").split()), gcs, tmp_path, monkeypatch)
    spark.assert_finished_on_both_workers([a for a in spark.master()["completedapps"] if a["id"] not in before])
    assert_kubeflow_run_wrote_directrunners_data_to_gcs(standin, run, serving, sample_run[1])
