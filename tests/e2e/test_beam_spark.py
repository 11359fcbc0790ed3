"""The pipeline's Beam steps on a real Apache Spark standalone cluster (tools/spark: a master, two
workers as separate JVMs, a Beam worker pool beside each, Beam's Spark job server), compared with the
DirectRunner run of the same preset: the same examples and statistics, a model as good, and the
work seen in Spark's own JSON API on both workers. The module's own cluster, on ports of its own.
"""
from __future__ import annotations

import pytest

from beam_equivalence import LocalCluster, assert_same_data_as_directrunner
from conftest import NO_LATENCY_GATE
from pipeline import runner
from pipeline.config import load_config
from schema import contract

BUDGET = 20 * 60  # seconds for the whole module, cluster up to down (see the fixture)
PORTS = {"SPARK_MASTER_PORT": "17077", "SPARK_UI_PORT": "18080", "BEAM_JOB_PORT": "18199",
         "BEAM_WORKER_POOL_PORT": "50110"}


class Spark(LocalCluster):
    """The running cluster: its Beam arguments and the master's JSON."""

    script, state_variable = "spark", "SPARK_STATE"

    def master(self) -> dict:
        return self.get_json(f"http://127.0.0.1:{PORTS['SPARK_UI_PORT']}/json/")


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    # The module takes ~8 min on 2 idle cores; the budget bounds a cluster that stops making progress.
    with Spark(tmp_path_factory.mktemp("spark-state"), PORTS).running(budget_seconds=BUDGET) as cluster:
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
    steps = (contract.EXAMPLE_GEN, contract.STATISTICS_GEN, contract.TRANSFORM, contract.EVALUATOR)
    assert all(summary.component(step).state == "COMPLETE" for step in steps)
    assert len(apps) == len(steps) and all(a["state"] == "FINISHED" for a in apps), apps
    # Each worker's own JSON lists the executors it ran, by application.
    ran_on = []
    for worker in spark.master()["workers"]:
        ran = spark.get_json(worker["webuiaddress"] + "/json/")
        ran_on.append({e["appid"] for e in ran["finishedexecutors"] + ran["executors"]})
    assert len(ran_on) == 2
    for app in apps:
        assert all(app["id"] in ids for ids in ran_on), (app["id"], ran_on)
