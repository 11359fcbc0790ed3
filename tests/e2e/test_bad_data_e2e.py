"""Bad CSVs stop the real pipeline before Transform and Trainer, with a fixable message; nothing is pushed."""
import os

import pytest

from conftest import SAMPLE_DATA, read_sample_rows, small_config, write_csv_gz
from pipeline import runner
from schema import contract


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    header, rows = read_sample_rows()
    rows[7][300] = 300          # pixel300 out of [0, 255]: line 9 of the file
    rows[11][0] = 11            # label out of [0, 9]: line 13
    data = tmp / "data"
    write_csv_gz(data / "fashion-mnist_test.csv.gz", header, rows)
    write_csv_gz(data / "fashion-mnist_train.csv.gz", *read_sample_rows(SAMPLE_DATA / "fashion-mnist_train.csv.gz"))
    config = small_config(tmp, data)
    return config, runner.run_local(config, progress=False)


def test_stops_at_the_gate_naming_features_rows_and_anomalies(bad_run):
    config, summary = bad_run
    assert runner.exit_code(summary) == runner.EXIT_FAILED
    message = "\n".join(summary.failures)
    assert "DataValidationError" in message and "split 'test'" in message
    assert "feature 'pixels'" in message and "feature 'label'" in message
    assert "line 9 column 'pixel300' = 300 (allowed 0..255)" in message
    assert "line 13 column 'label' = 11 (allowed 0..9)" in message
    assert summary.component("ValidationGate").state == "FAILED"
    for downstream in (contract.TRANSFORM, contract.TRAINER, contract.EVALUATOR, contract.PUSHER):
        assert summary.component(downstream) is None, downstream
    assert not os.path.exists(config.serving_model_dir)


def test_missing_column_stops_before_statistics(tmp_path, data_dir):
    header, rows = read_sample_rows(data_dir / "fashion-mnist_test.csv.gz")
    drop = header.index("pixel50")
    write_csv_gz(data_dir / "fashion-mnist_test.csv.gz", header[:drop] + header[drop + 1:],
                 [r[:drop] + r[drop + 1:] for r in rows])
    config = small_config(tmp_path, data_dir)
    summary = runner.run_local(config, progress=False)
    message = "\n".join(summary.failures)
    assert "CsvFormatError" in message and "missing column(s) pixel50" in message
    assert "fashion-mnist_test.csv.gz" in message
    assert summary.component("Transform") is None and not os.path.exists(config.serving_model_dir)
