"""The fast CSV reader on small files the tests write."""
import gzip

import numpy as np
import pytest
import tensorflow as tf

from components.csv_example_gen import CsvFormatError, csv_file_to_examples, read_table
from pipeline.features import CSV_COLUMNS

HEADER = ",".join(CSV_COLUMNS)


def _row(label: int, fill: int = 0) -> list:
    return [label] + [(fill + i) % 256 for i in range(784)]


def _text(rows: list[list], header: str = HEADER) -> str:
    return header + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows)


def _write(path, text: str, gz: bool = False) -> str:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def _features(serialized: bytes) -> dict:
    ex = tf.train.Example.FromString(serialized)
    return {k: list(f.int64_list.value) for k, f in ex.features.feature.items()}


@pytest.mark.parametrize("gz", [False, True])
def test_rows_become_label_and_784_pixels_in_order(tmp_path, gz):
    path = _write(tmp_path / "a.csv", _text([_row(3, 0), _row(9, 17)]), gz)
    rows = [_features(e) for e in csv_file_to_examples(path)]
    assert [r["label"] for r in rows] == [[3], [9]]
    assert rows[0]["pixels"] == _row(3, 0)[1:] and rows[1]["pixels"] == _row(9, 17)[1:]
    assert set(rows[0]) == {"label", "pixels"}


def test_columns_are_matched_by_name_not_position(tmp_path):
    cols = list(CSV_COLUMNS)
    cols[1], cols[2] = cols[2], cols[1]  # pixel2 before pixel1
    row = _row(4, 5)
    row[1], row[2] = row[2], row[1]
    table = read_table(_write(tmp_path / "a.csv", _text([row], ",".join(cols))))
    np.testing.assert_array_equal(table[0], _row(4, 5))


def test_out_of_domain_values_are_kept_for_validation(tmp_path):
    row = _row(11)
    row[300] = 300
    (ex,) = csv_file_to_examples(_write(tmp_path / "a.csv", _text([row])))
    assert _features(ex)["label"] == [11] and _features(ex)["pixels"][299] == 300


@pytest.mark.parametrize("make, message", [
    (lambda: "", "empty"),
    (lambda: HEADER + "\n", "no data rows"),
    (lambda: _text([_row(1)]) + "3,4\n", r"line 3 has 2 cells"),
    (lambda: _text([_row(1) + [7]]), r"line 2 has 786 cells"),
    (lambda: _text([_row(1)[:51] + _row(1)[52:]], HEADER.replace(",pixel51,", ",")), "missing column.*pixel51"),
    (lambda: _text([_row(1) + [0]], HEADER + ",extra"), "unexpected column.*extra"),
    (lambda: _text([_row(1)], HEADER.replace("pixel7,", "pixel07,")), "missing column.*pixel7.*unexpected column.*pixel07"),
    (lambda: _text([[1] + ["x"] + _row(1)[2:]]), r"line 2 column 'pixel1' = 'x'"),
    (lambda: _text([[1, ""] + _row(1)[2:]]), r"line 2 column 'pixel1' = ''"),
])
def test_broken_files_name_file_line_and_column(tmp_path, make, message):
    path = _write(tmp_path / "broken.csv", make())
    with pytest.raises(CsvFormatError, match=message) as err:
        list(csv_file_to_examples(path))
    assert "broken.csv" in str(err.value)


def test_corrupt_gzip_is_named(tmp_path):
    blob = gzip.compress(_text([_row(1)] * 50).encode())
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CsvFormatError, match="bad.csv.gz.*gzip"):
        list(csv_file_to_examples(str(path)))
