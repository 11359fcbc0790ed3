"""A CSV the schema rejects stops the real pipeline before Transform and Trainer; nothing is pushed."""
import os

import pytest

from conftest import read_sample_rows, small_config, write_csv_gz
from pipeline import runner


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    header, rows = read_sample_rows()
    rows[7][300] = 300          # pixel300 out of [0, 255]
    rows[11][0] = 11            # label out of [0, 9]
    data = tmp / "data"
    write_csv_gz(data / "fashion-mnist_test.csv.gz", header, rows)
    h, train = read_sample_rows(path=data.parent / "x") if False else read_sample_rows(
        path=__import__("conftest").SAMPLE_DATA / "fashion-mnist_train.csv.gz")
    write_csv_gz(data / "fashion-mnist_train.csv.gz", h, train)
    config = small_config(tmp, data)
    return config, runner.run_local(config, progress=False)


def test_stops_at_the_gate_naming_features_and_anomalies(bad_run):
    config, summary = bad_run
    assert runner.exit_code(summary) == runner.EXIT_FAILED
    message = "\n".join(summary.failures)
    assert "DataValidationError" in message
    assert "pixel300" in message and "label" in message and "split 'test'" in message
    assert summary.component("ValidationGate").state == "FAILED"
    for downstream in ("Transform", "Trainer", "Evaluator", "AtomicPusher"):
        assert summary.component(downstream) is None, downstream
    assert not os.path.exists(config.serving_model_dir) or not os.listdir(config.serving_model_dir)


def test_missing_column_is_named(tmp_path, data_dir):
    header, rows = read_sample_rows(data_dir / "fashion-mnist_test.csv.gz")
    drop = header.index("pixel50")
    write_csv_gz(data_dir / "fashion-mnist_test.csv.gz", header[:drop] + header[drop + 1:],
                 [r[:drop] + r[drop + 1:] for r in rows])
    config = small_config(tmp_path, data_dir)
    summary = runner.run_local(config, progress=False)
    message = "\n".join(summary.failures)
    assert "pixel50" in message and summary.component("Transform") is None
