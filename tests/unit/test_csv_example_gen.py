"""The exact CSV reader on small files the tests write: what real exports contain is accepted and
gives the same examples as the clean file; everything else is refused naming file, line, column
and the cell's text; random single-cell corruptions are refused or provably harmless."""
import csv
import gzip
import io
import random
import re

import numpy as np
import pytest

from components.data_input.csv_example_gen import csv_file_to_examples
from components.data_input.csv_table import BOM, CsvFormatError, cell_problem, parse_table, read_table
from data_input_helpers import HEADER, csv_text, features, make_row, write
from schema.contract import CSV_COLUMNS

ROWS = [make_row(3, 0), make_row(9, 17), make_row(0, 5)]
CLEAN = csv_text(ROWS)


def _row(label: int, fill: int = 0) -> list:
    return [label] + [(fill + i) % 256 for i in range(784)]


def _examples(path: str) -> list[dict]:
    return [features(e) for e in csv_file_to_examples(path)]


@pytest.fixture
def clean_examples(tmp_path):
    return _examples(write(tmp_path / "clean.csv", CLEAN))


@pytest.mark.parametrize("gz", [False, True])
def test_rows_become_label_and_784_pixels_in_order(tmp_path, gz):
    path = write(tmp_path / "a.csv", csv_text([_row(3, 0), _row(9, 17)]), gz)
    rows = _examples(path)
    assert [r["label"] for r in rows] == [[3], [9]]
    assert rows[0]["pixels"] == _row(3, 0)[1:] and rows[1]["pixels"] == _row(9, 17)[1:]
    assert set(rows[0]) == {"label", "pixels"}


def test_columns_are_matched_by_name_not_position(tmp_path):
    cols = list(CSV_COLUMNS)
    cols[1], cols[2] = cols[2], cols[1]  # pixel2 before pixel1
    row = _row(4, 5)
    row[1], row[2] = row[2], row[1]
    table = read_table(write(tmp_path / "a.csv", csv_text([row], ",".join(cols))))
    np.testing.assert_array_equal(table.values[0], _row(4, 5))


def test_out_of_domain_values_are_kept_for_validation(tmp_path):
    row = _row(11)
    row[300] = 300
    (ex,) = csv_file_to_examples(write(tmp_path / "a.csv", csv_text([row])))
    assert features(ex)["label"] == [11] and features(ex)["pixels"][299] == 300


def _quote_all(rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)  # what pandas' to_csv(quoting=QUOTE_ALL) writes
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return out.getvalue()                            # with CRLF line ends, as the csv module does


ACCEPTED = {
    "UTF-8 byte-order mark (Excel 'CSV UTF-8')": lambda: BOM + CLEAN.encode(),
    "CRLF line ends": lambda: CLEAN.replace("\n", "\r\n"),
    "every cell and name quoted, CRLF": lambda: _quote_all(ROWS),
    "BOM + CRLF + quoted": lambda: BOM + _quote_all(ROWS).encode(),
    "spaces after commas": lambda: CLEAN.replace(",", ", "),
    "tabs and spaces around cells": lambda: HEADER + "\n" + "".join(
        ",".join(f"\t{v}  " for v in r) + "\n" for r in ROWS),
    "quoted cells with blanks inside and out": lambda: HEADER + "\n" + "".join(
        ",".join(f' " {v}" ' for v in r) + "\n" for r in ROWS),
    "no newline at the end": lambda: CLEAN[:-1],
    "leading zeros and plus signs": lambda: HEADER + "\n" + "".join(
        ",".join(f"+00{v}" for v in r) + "\n" for r in ROWS),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_real_export_variants_give_the_clean_examples(tmp_path, case, clean_examples):
    assert _examples(write(tmp_path / "variant.csv", ACCEPTED[case]())) == clean_examples


def test_blank_lines_are_skipped_counted_and_line_numbers_kept(tmp_path, clean_examples):
    lines = CLEAN.split("\n")
    text = "\n" + lines[0] + "\n\n" + lines[1] + "\n   \n\t\r\n" + "\n".join(lines[2:]) + "\n\n"
    path = write(tmp_path / "blanks.csv", text)
    table = read_table(path)
    assert table.blank_lines == 6
    assert table.line_numbers.tolist() == [4, 7, 8]      # where each row really is in the file
    assert _examples(path) == clean_examples


REFUSED = {
    # cell text: what the reader must refuse (NumPy's parser read the first two as 0)
    "blank cell": "   ",
    "lone minus": "-",
    "empty cell": "",
    "underscore digit separator": "1_0",
    "decimal": "3.0",
    "exponent": "1e2",
    "hex": "0x1f",
    "two numbers": "1 2",
    "doubled sign": "--4",
    "trailing sign": "4-",
    "non-breaking space": "\u00a04",
    "half quoted": '"4',
    "quote inside": '4"2"',
    "empty quotes": '""',
    "beyond int64": "99999999999999999999",
    "letters": "x7",
}


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("column", [0, 300])
def test_non_integer_cells_are_refused_naming_file_line_column_and_text(tmp_path, case, column):
    rows = [list(r) for r in ROWS]
    rows[1][column] = REFUSED[case]
    path = write(tmp_path / "broken.csv", csv_text(rows))
    with pytest.raises(CsvFormatError) as err:
        read_table(path)
    message = str(err.value)
    assert "broken.csv" in message and "1 of 3 data rows refused" in message
    assert f"line 3 column '{CSV_COLUMNS[column]}' = " in message
    shown = message.split(f"line 3 column '{CSV_COLUMNS[column]}' = ", 1)[1]
    assert shown.startswith(repr(REFUSED[case]) if REFUSED[case].isascii() else ascii(REFUSED[case]))
    assert err.value.rows_refused == 1


@pytest.mark.parametrize("make, message", [
    (lambda: "", "empty"),
    (lambda: "\n \n", "empty"),
    (lambda: HEADER + "\n", "no data rows"),
    (lambda: HEADER + "\n\n\n", r"no data rows \(2 blank lines\)"),
    (lambda: csv_text([_row(1)]) + "3,4\n", r"line 3 has 2 cells"),
    (lambda: csv_text([_row(1) + [7]]), r"line 2 has 786 cells"),
    (lambda: csv_text([_row(1)[:51] + _row(1)[52:]], HEADER.replace(",pixel51,", ",")), "missing column.*pixel51"),
    (lambda: csv_text([_row(1) + [0]], HEADER + ",extra"), "unexpected column.*extra"),
    (lambda: csv_text([_row(1)], HEADER.replace("pixel7,", "pixel07,")),
     "missing column.*pixel7.*unexpected column.*pixel07"),
    (lambda: csv_text([_row(1)], "\ufeff" + HEADER.replace("pixel7,", "\ufeffpixel7,")),
     r"unexpected column.*'\\ufeffpixel7'"),
    (lambda: csv_text([_row(1)], HEADER.replace(",", ";")).replace(",", ";"), "separated by semicolons"),
    (lambda: "label,pixel1\x00\x00", "binary content"),
    (lambda: csv_text([[1, "x"] + _row(1)[2:]]), r"line 2 column 'pixel1' = 'x'"),
    (lambda: csv_text([[1, ""] + _row(1)[2:]]), r"line 2 column 'pixel1' = ''"),
    (lambda: csv_text([_row(1), [" "] + _row(1)[1:]]), r"line 3 column 'label' = ' ' \(not an integer\)"),
])
def test_broken_files_name_file_line_and_column(tmp_path, make, message):
    path = write(tmp_path / "broken.csv", make())
    with pytest.raises(CsvFormatError, match=message) as err:
        list(csv_file_to_examples(path))
    assert "broken.csv" in str(err.value)


def test_every_refused_row_is_counted_and_the_first_cells_shown(tmp_path):
    rows = [make_row(i % 10, i) for i in range(50)]
    for i in range(0, 50, 5):
        rows[i][0] = " "                       # ten labels blanked by a spreadsheet
    with pytest.raises(CsvFormatError) as err:
        read_table(write(tmp_path / "labels.csv", csv_text(rows)))
    assert "10 of 50 data rows refused" in str(err.value) and err.value.rows_refused == 10
    assert "line 2 column 'label' = ' '" in str(err.value) and "line 7 column 'label'" in str(err.value)


def test_corrupt_gzip_is_named(tmp_path):
    blob = gzip.compress(csv_text([_row(1)] * 50).encode())
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CsvFormatError, match="bad.csv.gz.*gzip"):
        list(csv_file_to_examples(str(path)))


# --- property: a random single-cell corruption is refused, or provably harmless -----------------

_ALPHABET = "0123456789 \t-+\"',._xeE\u00a0;\r\n"
_INTEGER = re.compile(r'[ \t]*(?:"[ \t]*([-+]?[0-9]+)[ \t]*"|([-+]?[0-9]+))[ \t]*')


def _corruptions(rng: random.Random, cell: str) -> str:
    kind = rng.randrange(6)
    if kind == 0:      # replaced by random text
        return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 5)))
    if kind == 1:      # one character inserted
        i = rng.randrange(len(cell) + 1)
        return cell[:i] + rng.choice(_ALPHABET) + cell[i:]
    if kind == 2:      # one character deleted
        i = rng.randrange(len(cell))
        return cell[:i] + cell[i + 1:]
    if kind == 3:      # decorated the way exports do
        return rng.choice(['"{}"', " {} ", "{}\t", '" {} "', "+{}", "-{}", "0{}", "{}.0"]).format(cell)
    if kind == 4:      # a huge number
        return str(rng.choice([2**63 - 1, 2**63, -2**63, 10**30, 2**62]))
    return rng.choice(["", " ", "-", "+", '""', "nan", "1_0", "١"])  # edge cases (incl. Arabic-Indic digit)


def test_random_single_cell_corruptions_are_refused_or_provably_harmless(tmp_path):
    """Seeded loop (no extra dependency): 400 corruptions of one cell of a valid 3-row CSV.

    Accepted => the table equals the clean one except that one cell, which holds exactly the
    integer its text spells under the grammar (so the corruption changed nothing, or changed a
    value that the schema then checks like any other). Refused => the message names the file and
    the corrupted line (and, for a cell-level refusal, the column and the text).
    """
    rng = random.Random(20261124)
    clean = np.array(ROWS, dtype=np.int64)
    outcomes = {"accepted": 0, "refused": 0}
    for trial in range(400):
        r, c = rng.randrange(len(ROWS)), rng.choice([0, 1, rng.randrange(785), 784])
        text = _corruptions(rng, str(ROWS[r][c]))
        rows = [[str(v) for v in row] for row in ROWS]
        rows[r][c] = text
        raw = csv_text(rows).encode()
        try:
            table = parse_table("corrupt.csv", raw)
        except CsvFormatError as e:
            outcomes["refused"] += 1
            message = str(e)
            assert message.startswith("corrupt.csv"), (text, message)
            if "\n" not in text and "\r" not in text and "," not in text:
                assert f"line {r + 2}" in message, (text, message)
                if "cells" not in message:   # a cell-level refusal shows the cell
                    assert f"column '{CSV_COLUMNS[c]}' = " in message, (text, message)
            continue
        outcomes["accepted"] += 1
        # A line break at the row's very end (or start) only adds a blank line, which is skipped.
        spelled = text.rstrip("\r\n") if c == 784 else text.lstrip("\r\n") if c == 0 else text
        m = _INTEGER.fullmatch(spelled)
        assert m is not None and not any(ch in spelled for ch in "\n\r,"), (trial, text)
        expected = clean.copy()
        expected[r, c] = int(m.group(1) or m.group(2))
        np.testing.assert_array_equal(table.values, expected, err_msg=repr(text))
        assert cell_problem(spelled.encode()) is None
    assert outcomes["accepted"] > 20 and outcomes["refused"] > 100, outcomes
