"""The pipeline's Beam steps on a real Apache Flink cluster (tools/flink: a JobManager, two
TaskManagers as separate JVMs, a Beam worker pool beside each, Beam's Flink job server), compared
with the DirectRunner run of the same preset (`sample_run`): the same examples, statistics and
evaluation, the work seen in Flink's own REST API on both TaskManagers, and the faults a cluster adds.

The cluster is this module's own, on ports of its own (a `make flink-up` cluster on the default ports
may run beside it), started once and stopped at the end. So is a GCS stand-in (tools/gcs) its worker
pools reach, for the compiled Kubeflow pipeline run on the cluster with a gs:// pipeline root.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from beam_equivalence import (
    SPLITS,
    Gcs,
    LocalCluster,
    assert_kubeflow_run_wrote_directrunners_data_to_gcs,
    assert_same_data_as_directrunner,
    assert_same_statistics,
    output,
    run_kubeflow_on_cluster,
    statistics,
)
from conftest import NO_LATENCY_GATE, SAMPLE_DATA, read_sample_rows, wait_until, write_csv_gz
from pipeline import runner
from pipeline.config import PROJECT_ROOT, load_config
from schema import contract

BUDGET = 30 * 60  # seconds for the whole module, cluster up to down (see the fixture)
PORTS = {"FLINK_REST_PORT": "18081", "FLINK_RPC_PORT": "16123", "BEAM_JOB_PORT": "18099",
         "BEAM_WORKER_POOL_PORT": "50100"}
GCS_PORTS = {"GCS_EMULATOR_PORT": "14443", "GCS_GATEWAY_PORT": "14480"}
TASKMANAGERS = {"taskmanager-1", "taskmanager-2"}
# The Beam steps of the sample pipeline: each submits one Flink job.
BEAM_STEPS = (contract.EXAMPLE_GEN, contract.STATISTICS_GEN, contract.TRANSFORM, contract.EVALUATOR)


class Flink(LocalCluster):
    """The running cluster: its Beam arguments and its REST API."""

    script, state_variable = "flink", "FLINK_STATE"

    @property
    def beam_args(self) -> tuple[str, ...]:
        return tuple(self.tool("args").split())

    def rest(self, path: str) -> dict:
        return self.get_json(f"http://127.0.0.1:{PORTS['FLINK_REST_PORT']}{path}")

    def jobs(self) -> dict[str, dict]:
        return {j["jid"]: j for j in self.rest("/jobs/overview")["jobs"]}

    def taskmanagers_of(self, jid: str) -> set[str]:
        """The TaskManagers that ran any of the job's tasks (REST: /jobs/:jid/vertices/:vid/taskmanagers)."""
        used = set()
        for vertex in self.rest(f"/jobs/{jid}")["vertices"]:
            for tm in self.rest(f"/jobs/{jid}/vertices/{vertex['id']}/taskmanagers")["taskmanagers"]:
                if tm["status"] == "FINISHED":
                    used.add(tm["taskmanager-id"])
        return used


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    with Gcs(tmp_path_factory.mktemp("gcs-state"), GCS_PORTS).running(budget_seconds=BUDGET) as store:
        yield store


@pytest.fixture(scope="module")
def flink(tmp_path_factory, gcs):
    # The module takes ~15 min on 2 idle cores; the budget bounds a cluster that stops making progress.
    with gcs.cluster(Flink, PORTS, tmp_path_factory, budget_seconds=BUDGET) as cluster:
        yield cluster


def flink_config(out: Path, flink: Flink, **overrides: str):
    return load_config("sample", overrides={"output_root": str(out), **NO_LATENCY_GATE,
                                            "beam_args": " ".join(flink.beam_args), **overrides})


@pytest.fixture(scope="module")
def flink_run(flink, tmp_path_factory):
    """The sample preset with its Beam steps on the cluster; returns (config, summary, the run's jobs,
    the TFX sdists left in the temporary directory before and after)."""
    before = set(flink.jobs())
    sdists = ephemeral_sdists()
    config = flink_config(tmp_path_factory.mktemp("flink-run"), flink)
    summary = flink.run(config)
    jobs = {jid: job for jid, job in flink.jobs().items() if jid not in before}
    return config, summary, jobs, (sdists, ephemeral_sdists())


def ephemeral_sdists() -> set[Path]:
    """The sdists of TFX that TFX's Beam executors build for remote workers when Beam arguments are
    set (tfx/utils/dependency_utils.py build_ephemeral_package: <mkdtemp>/build/tfx/dist/)."""
    return set(Path(tempfile.gettempdir()).glob("*/build/tfx/dist/tfx_ephemeral-*"))


def test_the_pipeline_runs_on_flink_and_pushes_a_model_as_good_as_directrunners(flink_run, sample_run):
    config, summary, *_ = flink_run
    assert summary.failures == [] and runner.exit_code(summary) == runner.EXIT_OK, summary.failures
    assert summary.pushed_to and os.path.isdir(summary.pushed_to)
    # Transform's output on Flink trained the same Trainer: the model clears the preset's threshold,
    # as DirectRunner's does (the two trainings differ in shuffling only).
    accuracy = summary.metrics["overall"][contract.ACCURACY_METRIC]
    assert accuracy >= config.accuracy_threshold
    assert abs(accuracy - sample_run[1].metrics["overall"][contract.ACCURACY_METRIC]) < 0.05


def test_every_beam_step_was_a_finished_flink_job_on_both_taskmanagers(flink_run, flink):
    _, summary, jobs, _ = flink_run
    for step in BEAM_STEPS:
        assert summary.component(step).state == "COMPLETE", step
    assert len(jobs) == len(BEAM_STEPS), {j["name"]: j["state"] for j in jobs.values()}
    assert all(j["state"] == "FINISHED" for j in jobs.values()), jobs
    used = set().union(*(flink.taskmanagers_of(jid) for jid in jobs))
    assert used == TASKMANAGERS
    # The biggest job (statistics over every example) was itself spread over both.
    biggest = max(jobs, key=lambda jid: jobs[jid]["tasks"]["total"])
    assert flink.taskmanagers_of(biggest) == TASKMANAGERS


def test_the_runs_scratch_is_gone_and_the_clusters_is_under_its_state(flink_run, flink):
    """What the run and the cluster write besides their outputs (~0.5 GB a run: a TFX sdist per
    Beam step, the job server's jar per job and TaskManager) does not pile up in /tmp: the run's
    own temporary directory is removed when it ends, and the TaskManagers' working directories
    (their blob caches) are under the cluster's state, which `down` removes."""
    before, after = flink_run[3]
    assert after == before
    for taskmanager in TASKMANAGERS:
        assert (flink.state / "work" / f"tm_{taskmanager}" / "blobStorage").is_dir(), taskmanager
        assert not (Path(tempfile.gettempdir()) / f"tm_{taskmanager}").exists()


def test_same_examples_and_statistics_as_directrunner(flink_run, sample_run):
    assert_same_data_as_directrunner(flink_run[1], sample_run[1])


def test_evaluator_on_flink_gives_directrunners_metrics_for_one_fixed_model(sample_run, flink, tmp_path):
    """One model (the DirectRunner run's), one set of examples, the Evaluator's Beam job on each runner."""
    from benchmarks.decision_power import run_evaluator
    from pipeline.pipeline import eval_config

    config, summary = sample_run
    model = output(summary, contract.TRAINER, "model").uri
    metrics = []
    for name, beam_args in (("direct", ()), ("flink", flink.beam_args)):
        (tmp_path / name).mkdir()
        _, evaluation = run_evaluator(summary, tmp_path / name, model, model, config.decision_policy(),
                                      eval_config(config.accuracy_threshold, config.class_recall_floor),
                                      config.accuracy_threshold, beam_args)
        metrics.append(runner.load_metrics(evaluation.uri))
    direct, on_flink = metrics
    assert set(on_flink) == set(direct) and "overall" in direct
    for slice_name, values in direct.items():
        assert set(on_flink[slice_name]) == set(values), slice_name
        for metric, value in values.items():
            assert round(on_flink[slice_name][metric], 4) == round(value, 4), (slice_name, metric)


def test_a_bad_csv_on_flink_stops_before_transform_with_the_local_message(flink, tmp_path):
    header, rows = read_sample_rows()
    rows[7][300] = 300          # pixel300 out of [0, 255]: line 9 of the file
    data = tmp_path / "data"
    write_csv_gz(data / "fashion-mnist_test.csv.gz", header, rows)
    write_csv_gz(data / "fashion-mnist_train.csv.gz", *read_sample_rows(SAMPLE_DATA / "fashion-mnist_train.csv.gz"))
    failures = []
    for name, beam_args in (("local", ""), ("flink", " ".join(flink.beam_args))):
        config = load_config("sample", overrides={"output_root": str(tmp_path / name), "data_root": str(data),
                                                  "beam_args": beam_args})
        summary = flink.run(config) if beam_args else runner.run_local(config, progress=False)
        assert runner.exit_code(summary) == runner.EXIT_FAILED
        assert summary.component(contract.TRANSFORM) is None and not os.path.exists(config.serving_model_dir)
        # The messages name the run's own output directory (where the anomalies are): the same text
        # once that is factored out.
        failures.append([f.replace(str(tmp_path / name), "<output>") for f in summary.failures])
    local, on_flink = failures
    assert any("line 9 column 'pixel300' = 300 (allowed 0..255)" in f for f in local), local
    assert on_flink == local


def test_a_taskmanager_killed_during_statistics_and_the_rerun_completes(flink, sample_run, tmp_path):
    """SIGKILL of a TaskManager JVM while StatisticsGen's job runs tasks on it: the step either
    recovers (Flink restarts the failed region on the TaskManager left) or fails naming the lost
    TaskManager; a rerun completes, and the statistics equal DirectRunner's (nothing half-written
    is used downstream)."""
    config = flink_config(tmp_path / "out", flink)
    before = set(flink.jobs())
    command = ["fmnist", "run", "--preset", "sample", "--output", str(tmp_path / "out"), "--set",
               "beam_args=" + " ".join(flink.beam_args), "--set", "infra_latency_p99_ms=0"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    statistics_job = []

    def statistics_running_on_taskmanager_2() -> bool:
        jobs = flink.jobs()
        new = sorted((jid for jid in jobs if jid not in before), key=lambda jid: jobs[jid]["start-time"])
        if len(new) < 2 or jobs[new[1]]["state"] != "RUNNING":   # the run's 2nd job: StatisticsGen's
            return False
        statistics_job[:] = [new[1]]
        return any(tm["taskmanager-id"] == "taskmanager-2" and tm["status"] == "RUNNING"
                   for vertex in flink.rest(f"/jobs/{new[1]}")["vertices"]
                   for tm in flink.rest(f"/jobs/{new[1]}/vertices/{vertex['id']}/taskmanagers")["taskmanagers"])
    try:
        wait_until(statistics_running_on_taskmanager_2, "StatisticsGen's tasks on taskmanager-2", seconds=900)
        os.kill(flink.pid("taskmanager-2"), signal.SIGKILL)
        output, _ = process.communicate(timeout=1800)
    finally:
        process.kill()
    first = runner.summarize(config)
    if process.returncode == 0:
        # Recovered: Flink saw the loss and restarted the tasks (its exception history says so).
        history = flink.rest(f"/jobs/{statistics_job[0]}/exceptions")["exceptionHistory"]["entries"]
        assert history and any("taskmanager-2" in json.dumps(e) for e in history), history
        assert flink.jobs()[statistics_job[0]]["state"] == "FINISHED"
    else:
        assert first.component(contract.STATISTICS_GEN).state == "FAILED", output
        assert "taskmanager-2" in output, output
        assert first.component(contract.TRANSFORM) is None
    flink.tool("up")                             # the TaskManager back, as Kubernetes restarts its pod
    if process.returncode != 0:
        rerun = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    final = runner.summarize(config)
    assert final.pushed_to and final.component(contract.STATISTICS_GEN).state in ("COMPLETE", "CACHED")
    for split in SPLITS:
        assert_same_statistics(statistics(final, split), statistics(sample_run[1], split))
    assert flink.rest("/overview")["taskmanagers"] == len(TASKMANAGERS)



def test_the_kubeflow_pipeline_runs_its_beam_steps_on_flink_with_a_gcs_pipeline_root(flink, gcs, sample_run,
                                                                                    tmp_path, monkeypatch):
    """The compiled pipeline under the KFP stand-in with the cluster's arguments and a gs:// root
    (beam_equivalence.run_kubeflow_on_cluster): each Beam step a finished Flink job, on both
    TaskManagers; the workers' statistics on GCS equal DirectRunner's; the model is pushed."""
    before = set(flink.jobs())
    standin, run, serving = run_kubeflow_on_cluster(flink.beam_args, gcs, tmp_path, monkeypatch)
    jobs = {jid: job for jid, job in flink.jobs().items() if jid not in before}
    assert len(jobs) == len(BEAM_STEPS), {j["name"]: j["state"] for j in jobs.values()}
    assert all(j["state"] == "FINISHED" for j in jobs.values()), jobs
    assert set().union(*(flink.taskmanagers_of(jid) for jid in jobs)) == TASKMANAGERS
    assert_kubeflow_run_wrote_directrunners_data_to_gcs(standin, run, serving, sample_run[1])
