"""What "the same result as DirectRunner" means for a pipeline run on a Beam cluster (Flink,
Spark), and the compiled Kubeflow pipeline run on one with a gs:// root: shared by
tests/e2e/test_beam_flink.py and test_beam_spark.py."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import NO_CLASS_FLOOR_ARGS, NO_LATENCY_GATE_ARGS, SAMPLE_DATA, compile_kubeflow
from container_engine import ContainerEngine, image_under_test
from kfp_standin import GcsObjectStore, KfpStandIn, RunResult
from pipeline import runner
from pipeline.config import PROJECT_ROOT
from schema import contract

SPLITS = (contract.TRAIN_SPLIT, contract.TEST_SPLIT)
log = logging.getLogger(__name__)


class LocalCluster:
    """A cluster a `tools/<engine>` script runs on 127.0.0.1 (`up`, `down`, `args`), on the ports a
    test module gives it and with its state (PID files, logs) in a directory of the test's own."""

    script = ""          # tools/<script>
    state_variable = ""  # the environment variable naming the state directory

    def __init__(self, state: Path, ports: dict[str, str]) -> None:
        self.env = {**os.environ, **ports, self.state_variable: str(state)}
        self.state = state
        self.expired = ""

    @contextlib.contextmanager
    def running(self, budget_seconds: float) -> Iterator[LocalCluster]:
        """`up`, then `down` when the module is done -- or once `budget_seconds` have passed.

        A Beam job on a cluster that cannot make progress waits for ever: Spark relaunched executors
        that could not start (no space left on the disk) 5.3 million times in one CI run, until the
        CI's limit stopped everything. Stopped, the cluster fails the job, and so the run, at once;
        `run` then says why.
        """
        self.tool("up")
        timer = threading.Timer(budget_seconds, self._expire, args=(budget_seconds,))
        timer.daemon = True
        timer.start()
        try:
            yield self
        finally:
            timer.cancel()
            self.tool("down")

    def _expire(self, budget_seconds: float) -> None:
        self.expired = (f"the {self.script} cluster was stopped after the test module's budget of "
                        f"{budget_seconds:.0f} s; its logs: {self.state / 'log'}")
        log.error(self.expired)
        self.tool("down")

    def run(self, config) -> runner.RunSummary:
        """The pipeline with its Beam steps on this cluster (config's beam_args), in this process."""
        summary = runner.run_local(config, progress=False)
        if self.expired:
            pytest.fail(f"{self.expired}; the run's failures: {summary.failures}")
        return summary

    def tool(self, *args: str) -> str:
        done = subprocess.run([str(PROJECT_ROOT / "tools" / self.script), *args], env=self.env, text=True,
                              capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    @staticmethod
    def get_json(url: str) -> dict:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return json.load(reply)

    def pid(self, name: str) -> int:
        return int((self.state / f"{name}.pid").read_text())


def output(summary, component: str, key: str):
    return summary.component(component).outputs[key][0]


def rows_per_split(summary) -> dict[str, int]:
    """ExampleGen's own count of the rows it took, per split."""
    return {split: s["rows"] for split, s in summary.data_input["splits"].items()}


def count_records(summary, split: str) -> int:
    """The tf.Examples ExampleGen wrote for a split, read back."""
    import tensorflow as tf
    directory = Path(output(summary, contract.EXAMPLE_GEN, "examples").uri) / f"Split-{split}"
    files = [str(p) for p in directory.iterdir()]
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def statistics(summary, split: str):
    import tensorflow_data_validation as tfdv
    uri = output(summary, contract.STATISTICS_GEN, "statistics").uri
    return tfdv.load_stats_binary(os.path.join(uri, f"Split-{split}", "FeatureStats.pb")).datasets[0]


def assert_same_statistics(on_cluster, direct) -> None:
    """Counts, extremes, zeros, means and deviations, every histogram (standard and quantiles)."""
    assert on_cluster.num_examples == direct.num_examples > 0
    features = {f.path.step[0]: f for f in direct.features}
    assert {f.path.step[0] for f in on_cluster.features} == set(features)
    for feature in on_cluster.features:
        other = features[feature.path.step[0]]
        if feature.HasField("num_stats"):
            a, b = feature.num_stats, other.num_stats
            assert a.common_stats.num_non_missing == b.common_stats.num_non_missing
            assert a.common_stats.tot_num_values == b.common_stats.tot_num_values
            assert (a.min, a.max, a.num_zeros) == (b.min, b.max, b.num_zeros)
            assert a.mean == pytest.approx(b.mean, rel=1e-9) and a.std_dev == pytest.approx(b.std_dev, rel=1e-9)
            assert a.histograms and list(a.histograms) == list(b.histograms)
        else:
            assert feature.bytes_stats.common_stats.num_non_missing == other.bytes_stats.common_stats.num_non_missing


def assert_same_data_as_directrunner(on_cluster, direct) -> None:
    """Examples per split (ExampleGen's count and the records on disk) and statistics."""
    assert rows_per_split(on_cluster) == rows_per_split(direct)
    for split in SPLITS:
        assert count_records(on_cluster, split) == count_records(direct, split) > 0, split
        assert_same_statistics(statistics(on_cluster, split), statistics(direct, split))


class Gcs(LocalCluster):
    """The GCS stand-in (tools/gcs): a bucket gs://fmnist and the environment its clients need."""

    script, state_variable = "gcs", "GCS_STATE"

    def environment(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.tool("env").splitlines())

    @contextlib.contextmanager
    def cluster(self, kind: type[LocalCluster], ports: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
                budget_seconds: float) -> Iterator[LocalCluster]:
        """A `kind` cluster (LocalCluster.running) whose worker pools reach this store, as a
        TaskManager's or executor's sidecar reaches GCS: its `env:` (BEAM_WORKER_ENV)."""
        worker_env = tmp_path_factory.mktemp(f"{kind.script}-env") / "worker.env"
        worker_env.write_text(self.tool("env") + "\n")
        with kind(tmp_path_factory.mktemp(f"{kind.script}-state"),
                  {**ports, "BEAM_WORKER_ENV": str(worker_env)}).running(budget_seconds) as cluster:
            yield cluster


def run_kubeflow_on_cluster(beam_args: tuple[str, ...], gcs: Gcs, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> tuple[KfpStandIn, RunResult, Path]:
    """`fmnist kubeflow compile --beam-args "<the cluster's arguments>"` with a gs:// pipeline root,
    and the sample's CSVs on gs:// too, run under the KFP stand-in: every step a container of the
    image on this machine's network with the GCS stand-in's environment; the Beam steps' workers
    read the data and read and write the artifacts on GCS themselves (a pod's /minio is out of
    their reach: kfp_standin.py). Returns the stand-in, the run and the serving root; this process
    can then read gs:// too."""
    env = gcs.environment()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    data, serving = "gs://fmnist/data", tmp_path / "serving"   # the data on GCS too
    GcsObjectStore().upload(SAMPLE_DATA, data)
    spec, root = tmp_path / "fmnist.yaml", "gs://fmnist/kfp"
    compile_kubeflow(spec, "--image", image_under_test(), "--preset", "sample", "--pipeline-root", root,
                     "--data-root", str(data), "--serving-root", str(serving), *NO_LATENCY_GATE_ARGS,
                     *NO_CLASS_FLOOR_ARGS, "--beam-args", " ".join(beam_args))
    standin = KfpStandIn(tmp_path / "backend", ContainerEngine.from_environment(),
                         volumes=[serving, gcs.state / "tls"], pod_env=env, network="host")
    run = standin.run(spec, {"epochs": 3, "accuracy_threshold": 0.5}, pipeline_root=root)
    assert run.succeeded, (run.error, {name: task.state for name, task in run.tasks.items()})
    return standin, run, serving


def assert_kubeflow_run_wrote_directrunners_data_to_gcs(standin: KfpStandIn, run: RunResult, serving: Path,
                                                       direct) -> None:
    """The statistics the cluster's workers wrote to gs:// equal DirectRunner's; Transform's output
    is there; the model trained on it is blessed and pushed."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    statistics_uri = standin.artifact_uri(run.tasks[contract.STATISTICS_GEN].outputs["statistics"])
    assert statistics_uri.startswith("gs://fmnist/kfp/")
    for split in SPLITS:
        on_cluster = tfdv.load_stats_binary(f"{statistics_uri}/Split-{split}/FeatureStats.pb").datasets[0]
        assert_same_statistics(on_cluster, statistics(direct, split))
    transformed = standin.artifact_uri(run.tasks[contract.TRANSFORM].outputs["transformed_examples"])
    assert tf.io.gfile.glob(f"{transformed}/Split-{contract.TRAIN_SPLIT}/*"), transformed
    blessing = standin.artifacts[run.tasks[contract.EVALUATOR].outputs["blessing"]]["custom_properties"]
    assert blessing["blessed"] == {"double": 1.0}
    assert len(os.listdir(serving / "fmnist")) == 1
