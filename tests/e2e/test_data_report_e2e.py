"""The per-split data report of the sample run (the session's one good-path run): the run summary
and the run report show files read and rows taken, skipped and refused."""
import os

from pipeline import runner


def test_run_summary_shows_files_and_rows_per_split(sample_run):
    config, summary = sample_run
    data = summary.data_input
    assert data is not None
    train, test = data["splits"]["train"], data["splits"]["test"]
    assert [os.path.basename(f["file"]) for f in train["files"]] == ["fashion-mnist_train.csv.gz"]
    assert (train["rows"], train["blank_lines"], train["rows_refused"]) == (2500, 0, 0)
    assert (test["rows"], test["blank_lines"], test["rows_refused"]) == (600, 0, 0)
    text = runner.format_summary(summary, config)
    assert "train: fashion-mnist_train.csv.gz -- 2,500 rows taken, 0 blank lines skipped, 0 rows refused" in text
    assert "test: fashion-mnist_test.csv.gz -- 600 rows taken" in text
    dup = data["duplicates"]["splits"]["test"]
    assert f"test: {dup['also_in_reference']:,} images also in 'train'" in text


def test_run_report_has_a_data_row_per_split(sample_run):
    _, summary = sample_run
    with open(summary.report_path) as f:
        page = f.read()
    assert '<table id="data">' in page
    assert ('<tr id="data-train"><td>train</td><td>fashion-mnist_train.csv.gz</td><td>2500</td><td>0</td><td>0</td>'
            in page)
    assert '<tr id="data-test"><td>test</td><td>fashion-mnist_test.csv.gz</td><td>600</td><td>0</td><td>0</td>' in page
