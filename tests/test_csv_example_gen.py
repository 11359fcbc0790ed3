"""The fast CSV reader on small files the tests write: same features as the stock reader."""
import gzip

import pytest
import tensorflow as tf

from components.csv_example_gen import CsvFormatError, csv_file_to_examples


def _write(path, text: str, gz: bool = False):
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def _features(serialized: bytes) -> dict:
    ex = tf.train.Example.FromString(serialized)
    out = {}
    for k, f in ex.features.feature.items():
        kind = f.WhichOneof("kind")
        out[k] = list(getattr(f, kind).value) if kind else []
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_integer_csv_plain_and_gzipped(tmp_path, gz):
    path = _write(tmp_path / "a.csv", "label,pixel1,pixel2\n3,0,255\n9,17,4\n", gz)
    rows = [_features(e) for e in csv_file_to_examples(path)]
    assert rows == [{"label": [3], "pixel1": [0], "pixel2": [255]},
                    {"label": [9], "pixel1": [17], "pixel2": [4]}]


def test_non_numeric_column_becomes_bytes_and_empty_cell_has_no_value(tmp_path):
    path = _write(tmp_path / "a.csv", "label,pixel1,pixel2\n3,x,\n4,5,6\n")
    rows = [_features(e) for e in csv_file_to_examples(path)]
    assert rows[0] == {"label": [3], "pixel1": [b"x"], "pixel2": []}
    assert rows[1] == {"label": [4], "pixel1": [b"5"], "pixel2": [6]}


def test_out_of_domain_values_are_kept_for_validation(tmp_path):
    path = _write(tmp_path / "a.csv", "label,pixel1\n11,300\n-1,2\n")
    assert [_features(e) for e in csv_file_to_examples(path)] == [
        {"label": [11], "pixel1": [300]}, {"label": [-1], "pixel1": [2]}]


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("label,pixel1\n", "no data rows"),
    ("label,pixel1\n1,2\n3\n", r"line 3 has 1 cells"),
    ("label,pixel1\n1,2,7\n3,4\n", r"line 2 has 3 cells"),
    ("label,,pixel2\n1,2,3\n", "empty column name"),
])
def test_broken_files_name_file_and_line(tmp_path, text, message):
    path = _write(tmp_path / "broken.csv", text)
    with pytest.raises(CsvFormatError, match=message) as err:
        list(csv_file_to_examples(path))
    assert "broken.csv" in str(err.value)


def test_corrupt_gzip_is_named(tmp_path):
    blob = gzip.compress(b"label,pixel1\n1,2\n" * 100)
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CsvFormatError, match="bad.csv.gz.*gzip"):
        list(csv_file_to_examples(str(path)))
