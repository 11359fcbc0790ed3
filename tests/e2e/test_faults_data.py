"""Fault injection, data: every broken CSV stops the real pipeline before training with an error
naming the file and the line, column or feature; the run fails (exit 2); nothing is pushed and the
model already being served is untouched. Figures for RELIABILITY.md come from this family.
"""
import gzip
import os
import random
import shutil

import pytest

from conftest import SAMPLE_DATA, read_sample_rows, write_csv_gz
from pipeline import runner
from pipeline.config import load_config
from schema import contract

TEST_CSV = "fashion-mnist_test.csv.gz"
TRAIN_CSV = "fashion-mnist_train.csv.gz"


def _rewrite(path, edit):
    header, rows = read_sample_rows(path)
    header, rows = edit(header, rows)
    write_csv_gz(path, header, rows)


def _set(row: int, col: int, value):
    def edit(header, rows):
        rows[row][col] = value
        return header, rows
    return edit


def _drop_column(name):
    def edit(header, rows):
        i = header.index(name)
        return header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in rows]
    return edit


def _extra_column(header, rows):
    return header + ["extra"], [r + [0] for r in rows]


def _rename_column(header, rows):
    return ["label"] + ["p" + h[5:] if h == "pixel10" else h for h in header[1:]], rows


def _raw(path, transform):
    with gzip.open(path, "rb") as f:
        text = f.read()
    path.write_bytes(transform(text))


def _shirts_vanish(header, rows):
    kept, shirts = [], 0
    for r in rows:
        if r[0] == 6:
            shirts += 1
            if shirts > 10:
                continue
        kept.append(r)
    return header, kept


def _cells(*edits):
    """Several cells set at once, in whichever files: (file, row, column, text)."""
    def damage(data):
        for target in {e[0] for e in edits}:
            header, rows = read_sample_rows(data / target)
            for _, row, col, text in (e for e in edits if e[0] == target):
                rows[row][col] = text
            write_csv_gz(data / target, header, rows)
    return damage


def _copy(source, target, rows=None):
    def damage(data):
        header, body = read_sample_rows(data / source)
        write_csv_gz(data / target, header, body[:rows] if rows else body)
    return damage


def _on(target, damage):
    return lambda data: damage(data / target)


def _other_layouts_then_a_bad_pixel(data):
    """Issue 33: the test CSV with `label` last and CR-only line ends (Excel's "CSV (Macintosh)"),
    the training CSV with all 785 columns shuffled -- both read by name (these once failed with
    "ndarray is not C-contiguous" and a csv-module error) -- and one pixel of 300, which the gate
    must then find under its own column name and line."""
    header, rows = read_sample_rows(data / TEST_CSV)
    rows[9][300] = 300
    write_csv_gz(data / TEST_CSV, header[1:] + header[:1], [r[1:] + r[:1] for r in rows], end="\r")
    header, rows = read_sample_rows(data / TRAIN_CSV)
    order = list(range(len(header)))
    random.Random(33).shuffle(order)
    write_csv_gz(data / TRAIN_CSV, [header[i] for i in order], [[r[i] for i in order] for r in rows])


FAULTS = {
    # name: (damage to the data directory, expected fragments of the error)
    "non-numeric pixel": (_on(TEST_CSV, lambda p: _rewrite(p, _set(4, 120, "x7"))),
                          ["CsvFormatError", TEST_CSV, "line 6 column 'pixel120' = 'x7'"]),
    # NumPy's parser read a blank cell and a lone '-' as 0: silently relabelled rows (issue 18).
    "blank label, lone minus, 1_0 (one run, both files)": (
        _cells((TRAIN_CSV, 7, 0, "  "), (TRAIN_CSV, 30, 0, "-"), (TEST_CSV, 2, 500, "1_0")),
        ["CsvFormatError", f"{TRAIN_CSV}: 2 of 2500 data rows refused", "line 9 column 'label' = '  '",
         "line 32 column 'label' = '-'", f"{TEST_CSV}: 1 of 600 data rows refused",
         "line 4 column 'pixel500' = '1_0'"]),
    "pixel out of range": (_on(TEST_CSV, lambda p: _rewrite(p, _set(9, 300, 300))),
                           ["DataValidationError", "feature 'pixels'", "line 11 column 'pixel300' = 300"]),
    "label-last CR-only test CSV, shuffled training CSV, then a pixel out of range": (
        _other_layouts_then_a_bad_pixel,
        ["DataValidationError", "feature 'pixels'", f"{TEST_CSV} line 11 column 'pixel300' = 300"]),
    "label out of range": (_on(TRAIN_CSV, lambda p: _rewrite(p, _set(20, 0, 11))),
                           ["DataValidationError", "feature 'label'", TRAIN_CSV, "line 22 column 'label' = 11"]),
    "negative pixel": (_on(TRAIN_CSV, lambda p: _rewrite(p, _set(0, 1, -1))),
                       ["DataValidationError", "line 2 column 'pixel1' = -1"]),
    "missing column": (_on(TEST_CSV, lambda p: _rewrite(p, _drop_column("pixel784"))),
                       ["CsvFormatError", "missing column(s) pixel784"]),
    "extra column": (_on(TEST_CSV, lambda p: _rewrite(p, _extra_column)), ["unexpected column(s) 'extra'"]),
    "wrong header": (_on(TEST_CSV, lambda p: _rewrite(p, _rename_column)),
                     ["missing column(s) pixel10", "unexpected column(s) 'p10'"]),
    "empty file": (_on(TEST_CSV, lambda p: p.write_bytes(gzip.compress(b""))), ["the file is empty"]),
    "truncated last line": (_on(TEST_CSV, lambda p: _raw(p, lambda t: gzip.compress(t[:-1000]))),
                            ["line 601 has", "truncated"]),
    "corrupt gzip": (_on(TRAIN_CSV, lambda p: p.write_bytes(p.read_bytes()[:5000])), ["not a readable gzip file"]),
    "class balance drift": (_on(TRAIN_CSV, lambda p: _rewrite(p, _shirts_vanish)),
                            ["DataValidationError", "feature 'label'", "class balance"]),
    # `latest_train.csv` contains 'test': the old `*test*.csv*` glob fed it to the test split.
    "second training CSV (latest_train.csv)": (
        _copy(TRAIN_CSV, "latest_train.csv.gz"),
        ["DataSelectionError", "split 'train': '*_train.csv*' matched 2 files but 1 is expected",
         f"{TRAIN_CSV}, latest_train.csv.gz"]),
    "test split copied from training rows": (
        _copy(TRAIN_CSV, TEST_CSV, rows=600),
        ["DuplicateImagesError", "600 of 600 images of split 'test' (100.00%) are also in split 'train'",
         f"{TEST_CSV} line 2 = {TRAIN_CSV} line 2"]),
    "missing data_root": (lambda data: shutil.rmtree(data), ["DataSelectionError", "does not exist"]),
}


PROJECT_ERRORS = {"CsvFormatError", "DataValidationError", "DataSelectionError", "DuplicateImagesError"}
REFUSED_ROWS = {"blank label, lone minus, 1_0 (one run, both files)": {"train": 2, "test": 1}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A serving directory with a model version already in it, which no failed run may touch."""
    root = tmp_path_factory.mktemp("served")
    version = root / "fmnist" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"the model in service")
    return root


def _snapshot(root):
    return sorted((os.path.relpath(os.path.join(d, f), root), open(os.path.join(d, f), "rb").read())
                  for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_data_fault_stops_before_training(fault, tmp_path, served):
    damage, expected = FAULTS[fault]
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, data)
    damage(data)
    before = _snapshot(served)
    config = load_config("sample", overrides={"output_root": str(tmp_path / "out"), "data_root": str(data),
                                              "serving_root": str(served)})
    summary = runner.run_local(config, progress=False)
    message = "\n".join(summary.failures)
    assert runner.exit_code(summary) == runner.EXIT_FAILED, fault
    assert {f.split(":", 1)[0] for f in summary.failures} <= PROJECT_ERRORS, (fault, message)  # no raw ValueError
    for fragment in expected:
        assert fragment in message, (fault, fragment, message)
    for downstream in (contract.TRANSFORM, contract.TRAINER, contract.EVALUATOR, contract.PUSHER):
        assert summary.component(downstream) is None, (fault, downstream)
    assert summary.pushed_to is None
    assert _snapshot(served) == before
    if fault in REFUSED_ROWS:   # the run summary counts the refused rows per split
        assert {split: s["rows_refused"] for split, s in summary.data_input["splits"].items()} \
            == REFUSED_ROWS[fault]
        assert "1 rows refused" in runner.format_summary(summary, config)
