"""What "the same result as DirectRunner" means for a pipeline run on a Beam cluster (Flink,
Spark): shared by tests/e2e/test_beam_flink.py and test_beam_spark.py."""
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
