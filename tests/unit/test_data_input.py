"""Split selection and FastCsvExampleGen's executor (run directly, real Beam) on small data
directories the tests write: splits cannot mix, duplicates between splits are counted and above
the limit stop the run, every refused file is named, and the per-split data report is recorded."""
import gzip
import random
from pathlib import Path

import pytest

from components.data_input.csv_example_gen import DuplicateImagesError
from components.data_input.csv_table import BOM, CsvFormatError
from components.data_input.split_files import DataSelectionError, ignored_reason, select_splits
from data_input_helpers import csv_text, features, make_row, permuted_csv, run_example_gen, write
from pipeline.config import ConfigError, load_config
from schema.contract import CSV_COLUMNS, LABEL_KEY, PIXEL_KEYS

PATTERNS = {"train": "*_train.csv*", "test": "*_test.csv*"}
TRAIN = [make_row(i % 10, i) for i in range(30)]
TEST = [make_row(i % 10, 1000 + i) for i in range(10)]


def _clean_dir(root: Path) -> Path:
    write(root / "fashion-mnist_train.csv", csv_text(TRAIN))
    write(root / "fashion-mnist_test.csv.gz", csv_text(TEST), gz=True)
    return root


@pytest.mark.parametrize("name, why", [
    ("fashion-mnist_train.csv~", "editor backup"), ("#fashion-mnist_train.csv#", "editor backup"),
    (".#fashion-mnist_train.csv", "hidden file"), (".fashion-mnist_train.csv.swp", "hidden file"),
    (".~lock.fashion-mnist_train.csv#", "hidden file"), ("fashion-mnist_train.csv.bak", "backup copy"),
    ("fashion-mnist_train.csv.ORIG", "backup copy"), ("fashion-mnist_train.csv.gz.part", "backup copy"),
    ("fashion-mnist_train.csv", None), ("fashion-mnist_train.csv.gz", None),
])
def test_backup_and_hidden_files_are_never_data(name, why):
    assert ignored_reason(name) == why


def test_backups_next_to_the_data_are_ignored_and_listed(tmp_path):
    root = _clean_dir(tmp_path)
    for junk in ("fashion-mnist_train.csv~", ".#fashion-mnist_train.csv", "fashion-mnist_test.csv.gz.bak"):
        write(root / junk, csv_text(TRAIN))
    selected = select_splits(str(root), PATTERNS)
    assert [Path(f).name for f in selected["train"].files] == ["fashion-mnist_train.csv"]
    assert [Path(f).name for f in selected["test"].files] == ["fashion-mnist_test.csv.gz"]
    assert selected["train"].ignored == [(".#fashion-mnist_train.csv", "hidden file"),
                                         ("fashion-mnist_train.csv~", "editor backup")]


def test_default_patterns_are_anchored_so_a_train_file_never_feeds_test(tmp_path):
    """`latest_train.csv` contains 'test' -- the old `*test*.csv*` put it in the test split."""
    root = _clean_dir(tmp_path)
    write(root / "latest_train.csv", csv_text(TRAIN))
    with pytest.raises(DataSelectionError) as err:
        select_splits(str(root), PATTERNS)
    message = str(err.value)
    assert "split 'train': '*_train.csv*' matched 2 files but 1 is expected (train_file_count): " \
           "fashion-mnist_train.csv, latest_train.csv" in message
    assert "split 'test'" not in message


def test_a_second_training_csv_stops_the_run_listing_both(tmp_path):
    root = _clean_dir(tmp_path)
    write(root / "fashion-mnist_train.csv.gz", csv_text(TRAIN), gz=True)   # the same data, gzipped
    with pytest.raises(DataSelectionError, match="matched 2 files.*fashion-mnist_train.csv, "
                                                 "fashion-mnist_train.csv.gz"):
        select_splits(str(root), PATTERNS)
    assert len(select_splits(str(root), PATTERNS, {"train": 2})["train"].files) == 2


def test_overlapping_patterns_stop_the_run_naming_the_file(tmp_path):
    root = _clean_dir(tmp_path)
    with pytest.raises(DataSelectionError) as err:
        select_splits(str(root), {"train": "*_train.csv", "test": "fashion-mnist_*.csv"})
    assert ("fashion-mnist_train.csv is matched by the patterns of split 'train' ('*_train.csv') and "
            "split 'test' ('fashion-mnist_*.csv')") in str(err.value)


def test_no_match_lists_the_files_that_are_there(tmp_path):
    write(tmp_path / "train.csv", csv_text(TRAIN))
    write(tmp_path / "test.csv", csv_text(TEST))
    with pytest.raises(DataSelectionError) as err:
        select_splits(str(tmp_path), PATTERNS)
    assert "split 'train': no file in" in str(err.value) and "(files there: test.csv, train.csv)" in str(err.value)
    assert "set train_pattern" in str(err.value)
    assert len(select_splits(str(tmp_path), {"train": "train.csv", "test": "test.csv"})["test"].files) == 1


def test_missing_or_non_directory_data_root_says_so(tmp_path):
    with pytest.raises(DataSelectionError, match=f"data_root {tmp_path / 'nope'} does not exist"):
        select_splits(str(tmp_path / "nope"), PATTERNS)
    file = write(tmp_path / "fashion-mnist_train.csv", csv_text(TRAIN))
    with pytest.raises(DataSelectionError, match=f"data_root {file} is not a directory"):
        select_splits(file, PATTERNS)


@pytest.mark.parametrize("overrides, field", [
    ({"train_pattern": "data/*_train.csv"}, "train_pattern"), ({"test_pattern": ""}, "test_pattern"),
    ({"test_pattern": "*_train.csv*"}, "test_pattern"), ({"train_file_count": 0}, "train_file_count"),
    ({"max_duplicate_share": 1.5}, "max_duplicate_share"),
])
def test_unusable_data_config_is_refused_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        load_config("sample", overrides=overrides)


def test_cli_says_a_missing_data_root_does_not_exist_before_starting_the_pipeline(tmp_path, capsys):
    from pipeline import cli

    args = cli.build_parser().parse_args(["run", "--preset", "sample", "--data", str(tmp_path / "missing")])
    assert cli.run_command(args) == 2                # as cli.main runs it, without TensorFlow's start
    assert capsys.readouterr().err == f"fmnist run: data_root {tmp_path / 'missing'} does not exist; set it " \
                                      "(--data DIR) to the directory holding the training and test CSVs\n"


# --- the executor ---------------------------------------------------------------------------------

def test_executor_records_files_and_rows_per_split(tmp_path):
    root = _clean_dir(tmp_path / "data")
    write(root / "fashion-mnist_train.csv~", "not even a csv")
    examples, report = run_example_gen(tmp_path / "run", root)
    assert [features(e)["label"][0] for e in examples["train"]] == [r[0] for r in TRAIN]
    assert len(examples["test"]) == len(TEST)
    train, test = report["splits"]["train"], report["splits"]["test"]
    assert (train["rows"], train["blank_lines"], train["rows_refused"]) == (30, 0, 0)
    assert [Path(f["file"]).name for f in test["files"]] == ["fashion-mnist_test.csv.gz"]
    assert train["ignored"] == [{"file": "fashion-mnist_train.csv~", "why": "editor backup"}]
    assert report["duplicates"]["splits"]["test"]["also_in_reference"] == 0


def test_export_variants_give_the_same_examples_and_blank_lines_are_counted(tmp_path):
    clean, _ = run_example_gen(tmp_path / "clean", _clean_dir(tmp_path / "clean-data"))
    root = tmp_path / "variants"
    text = csv_text(TRAIN, end="\r\n").replace("\r\n", "\r\n\r\n", 3)      # CRLF, 3 blank lines
    write(root / "fashion-mnist_train.csv", BOM + text.encode())
    write(root / "fashion-mnist_test.csv.gz",
          csv_text([[f'"{v}"' for v in r] for r in TEST]), gz=True)         # quoted numbers
    examples, report = run_example_gen(tmp_path / "run", root)
    for split in ("train", "test"):   # compared parsed: a proto map's serialized order may vary
        assert [features(e) for e in examples[split]] == [features(e) for e in clean[split]]
    assert report["splits"]["train"]["blank_lines"] == 3
    assert report["splits"]["train"]["files"][0]["byte_order_mark"] is True


def test_columns_in_any_order_and_cr_line_ends_give_the_clean_examples(tmp_path):
    """Issue 33: a test CSV with `label` last and CR-only line ends (Excel's "CSV (Macintosh)"),
    a training CSV with all 785 columns shuffled (header and rows alike) and mixed line ends: the
    same Examples, rows and duplicates as the canonical files (a reordered table once reached the
    image hashes in Fortran order: "ndarray is not C-contiguous")."""
    test = TEST + [list(TRAIN[3])]                  # one duplicate: the hashes are compared too
    clean_root = tmp_path / "clean-data"
    write(clean_root / "fashion-mnist_train.csv", csv_text(TRAIN))
    write(clean_root / "fashion-mnist_test.csv.gz", csv_text(test), gz=True)
    clean, clean_report = run_example_gen(tmp_path / "clean", clean_root, max_duplicate_share=0.1)
    shuffled = list(CSV_COLUMNS)
    random.Random(33).shuffle(shuffled)
    root = tmp_path / "layouts"
    write(root / "fashion-mnist_train.csv", permuted_csv(TRAIN, shuffled, end="\r").replace("\r", "\n", 5))
    write(root / "fashion-mnist_test.csv.gz", permuted_csv(test, list(PIXEL_KEYS) + [LABEL_KEY], end="\r"),
          gz=True)
    examples, report = run_example_gen(tmp_path / "run", root, max_duplicate_share=0.1)
    for split in ("train", "test"):   # compared parsed: a proto map's serialized order may vary
        assert [features(e) for e in examples[split]] == [features(e) for e in clean[split]], split
        assert report["splits"][split]["rows"] == clean_report["splits"][split]["rows"]
    assert [f["line_ends"] for s in ("train", "test") for f in report["splits"][s]["files"]] == ["mixed", "CR"]
    assert report["duplicates"] == clean_report["duplicates"]     # same hashes, same line numbers
    assert report["duplicates"]["splits"]["test"]["also_in_reference"] == 1


def test_unreadable_files_are_refused_in_the_projects_words(tmp_path):
    """UTF-16 text and a cut gzip file: one CsvFormatError naming both, no Python or zlib wording."""
    root = tmp_path / "data"
    write(root / "fashion-mnist_train.csv", csv_text(TRAIN).encode("utf-16"))
    write(root / "fashion-mnist_test.csv.gz", gzip.compress(csv_text(TEST).encode())[:300])
    with pytest.raises(CsvFormatError) as err:
        run_example_gen(tmp_path / "run", root)
    message = str(err.value)
    assert "fashion-mnist_train.csv, line 1 (header): binary content" in message
    assert "fashion-mnist_test.csv.gz: not a readable gzip file (the compressed data ends early" in message
    assert "Error" not in message and "end-of-stream" not in message


def test_duplicates_between_train_and_test_are_counted_and_above_the_share_stop(tmp_path):
    root = tmp_path / "data"
    write(root / "fashion-mnist_train.csv", csv_text(TRAIN))
    test = TEST[:8] + [list(TRAIN[4]), [7] + TRAIN[9][1:]]    # two training images, one relabelled
    write(root / "fashion-mnist_test.csv", csv_text(test))
    _, report = run_example_gen(tmp_path / "ok", root, max_duplicate_share=0.2)
    dup = report["duplicates"]["splits"]["test"]
    assert (dup["also_in_reference"], dup["different_label"]) == (2, 1)
    assert dup["share"] == pytest.approx(0.2)
    assert dup["examples"][0] == "fashion-mnist_test.csv line 10 = fashion-mnist_train.csv line 6"
    with pytest.raises(DuplicateImagesError, match=r"2 of 10 images of split 'test' \(20.00%\) are also "
                                                   r"in split 'train', above max_duplicate_share = 10.00%"):
        run_example_gen(tmp_path / "strict", root, max_duplicate_share=0.1)


def test_every_refused_file_is_named_with_its_refused_rows(tmp_path):
    root = tmp_path / "data"
    train = [list(r) for r in TRAIN]
    train[3][0], train[5][0] = " ", "-"        # both read as label 0 by NumPy's parser
    test = [list(r) for r in TEST]
    test[2][100] = "1_0"
    write(root / "fashion-mnist_train.csv", csv_text(train))
    write(root / "fashion-mnist_test.csv", csv_text(test))
    with pytest.raises(CsvFormatError) as err:
        run_example_gen(tmp_path / "run", root)
    message = str(err.value)
    assert "fashion-mnist_train.csv: 2 of 30 data rows refused" in message
    assert "line 5 column 'label' = ' '" in message and "line 7 column 'label' = '-'" in message
    assert "fashion-mnist_test.csv: 1 of 10 data rows refused" in message
    assert "line 4 column 'pixel100' = '1_0'" in message
    assert err.value.rows_refused == 3
