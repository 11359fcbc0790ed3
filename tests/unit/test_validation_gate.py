"""ValidationGate (components/validation_gate.py) on hand-made artifacts: it passes clean data,
stops on anomalies naming the offending CSV cells (file, line, column, value, domain: the CSV
source's row lookup, components/data_input/csv_example_gen.py offending_cells), and stops
on a train/test class balance beyond the schema's L-infinity threshold. The expected cells and
distances are computed here from the rows written, not read back from the gate."""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.data_input.csv_example_gen import MAX_CELLS_SHOWN, offending_cells
from components.validation_gate import DataValidationError, ValidationGate
from pipeline.sources import csv_files
from schema.contract import CSV_COLUMNS, LABEL_KEY, NUM_CLASSES, NUM_PIXELS, RAW_PIXELS_KEY
from schema.make_schema import LABEL_DRIFT_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schema" / "schema.pbtxt"
PATTERNS = {"train": "*_train.csv*", "test": "*_test.csv*"}
gate = ValidationGate.EXECUTOR_SPEC.executor_class._FUNCTION


def _write_csv(path: Path, rows: np.ndarray) -> None:
    text = ",".join(CSV_COLUMNS) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def _rows(labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.c_[labels, rng.integers(0, 256, (len(labels), NUM_PIXELS))]


def _artifacts(tmp_path: Path, train_labels: np.ndarray, test_labels: np.ndarray, anomalous: dict[str, str]):
    """(anomalies, statistics, schema) artifacts as ExampleValidator, StatisticsGen and SchemaGen
    leave them; `anomalous` = {split: feature} with one anomaly each."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    from tfx.types import artifact_utils, standard_artifacts

    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    os.makedirs(schema.uri)
    shutil.copy(SCHEMA, schema.uri)
    statistics, anomalies = standard_artifacts.ExampleStatistics(), standard_artifacts.ExampleAnomalies()
    for artifact, name in ((statistics, "statistics"), (anomalies, "anomalies")):
        artifact.uri = str(tmp_path / name)
        artifact.split_names = artifact_utils.encode_split_names(list(PATTERNS))
    options = tfdv.StatsOptions(schema=tfdv.load_schema_text(str(SCHEMA)))
    for split, labels in (("train", train_labels), ("test", test_labels)):
        frame = pd.DataFrame({LABEL_KEY: labels, RAW_PIXELS_KEY: list(_rows(labels, 0)[:, 1:])})
        stats_dir = tmp_path / "statistics" / f"Split-{split}"
        stats_dir.mkdir(parents=True)
        (stats_dir / "FeatureStats.pb").write_bytes(
            tfdv.generate_statistics_from_dataframe(frame, stats_options=options).SerializeToString())
        found = anomalies_pb2.Anomalies()
        if split in anomalous:
            reason = found.anomaly_info[anomalous[split]].reason.add()
            reason.description = "Unexpectedly large value: 300."
        diff_dir = tmp_path / "anomalies" / f"Split-{split}"
        diff_dir.mkdir(parents=True)
        (diff_dir / "SchemaDiff.pb").write_bytes(found.SerializeToString())
    return anomalies, statistics, schema


BALANCED = np.repeat(np.arange(NUM_CLASSES), 3)


def _run(tmp_path: Path, data: Path, train_labels=BALANCED, test_labels=BALANCED, anomalous=None) -> None:
    anomalies, statistics, schema = _artifacts(tmp_path, train_labels, test_labels, anomalous or {})
    gate(anomalies=anomalies, statistics=statistics, schema=schema, input_base=str(data),
         split_patterns=json.dumps(PATTERNS), row_lookup=csv_files.ROW_LOOKUP)


def test_clean_data_with_the_same_class_balance_passes(tmp_path):
    assert _run(tmp_path, tmp_path) is None


def test_anomalies_stop_the_run_and_name_the_offending_cells(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = _rows(BALANCED, 1)
    rows[4, 1 + 99] = 300          # line 6 (header = line 1), pixel100
    rows[7, 0] = 12                # line 9, the label outside 0..9
    _write_csv(data / "fashion_train.csv.gz", rows)
    _write_csv(data / "fashion_test.csv", _rows(BALANCED, 2))
    with pytest.raises(DataValidationError) as refused:
        _run(tmp_path, data, anomalous={"train": RAW_PIXELS_KEY})
    message = str(refused.value)
    path = data / "fashion_train.csv.gz"
    assert f"split 'train', feature '{RAW_PIXELS_KEY}': Unexpectedly large value: 300." in message
    assert f"{path}: 2 of {len(rows)} rows refused by the schema" in message
    assert f"{path} line 6 column 'pixel100' = 300 (allowed 0..255)" in message
    assert f"{path} line 9 column 'label' = 12 (allowed 0..9)" in message
    assert "split 'test'" not in message   # the test split has no anomaly


def test_offending_cells_are_capped(tmp_path):
    rows = _rows(BALANCED, 1)
    rows[:, 5] = 256                                 # every row: one cell outside the domain
    _write_csv(tmp_path / "x_train.csv", rows)
    cells = offending_cells(str(tmp_path), "train", PATTERNS["train"], {RAW_PIXELS_KEY: (0, 255), LABEL_KEY: (0, 9)})
    path = tmp_path / "x_train.csv"
    assert cells[0] == f"{path}: {len(rows)} of {len(rows)} rows refused by the schema"
    assert cells[1:1 + MAX_CELLS_SHOWN] == [f"{path} line {i + 2} column 'pixel5' = 256 (allowed 0..255)"
                                            for i in range(MAX_CELLS_SHOWN)]
    assert cells[-1] == f"... {len(rows) - MAX_CELLS_SHOWN} more such cells in {path}"


def _linf(a: np.ndarray, b: np.ndarray) -> float:
    share = [np.bincount(x, minlength=NUM_CLASSES) / len(x) for x in (a, b)]
    return float(np.abs(share[0] - share[1]).max())


@pytest.mark.parametrize("extra_trousers", [0, 1, 12])
def test_class_balance_between_train_and_test_is_checked_at_the_schemas_threshold(tmp_path, extra_trousers):
    test_labels = np.r_[BALANCED, np.ones(extra_trousers, np.int64)]
    distance = _linf(BALANCED, test_labels)           # 0, 4/31 - 3/30 ... (computed, not read back)
    if distance <= LABEL_DRIFT_THRESHOLD:
        assert _run(tmp_path, tmp_path, test_labels=test_labels) is None
        return
    with pytest.raises(DataValidationError) as refused:
        _run(tmp_path, tmp_path, test_labels=test_labels)
    assert f"split 'train', feature '{LABEL_KEY}'" in str(refused.value)
    assert f"{distance:.6g}"[:5] in str(refused.value) and "class balance of 'train' vs. 'test'" in str(refused.value)
