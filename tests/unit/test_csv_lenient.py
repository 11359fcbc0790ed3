"""The CSV reader's lenient mode (CsvReader.lenient_rows, used by `fmnist predict`): the label
column optional, every row yielded good or with its error (file, line, row number, column) while
the rows after it are still read, and the same cell grammar as the strict reading that refuses the
whole file. No TensorFlow or Beam import: these run in well under a second."""
import gzip

import numpy as np
import pytest

from components.data_input.csv_table import BOM, CsvFormatError, CsvReader, cell_problem, parse_table
from schema.contract import CSV_COLUMNS, PIXEL_KEYS

HEADER = ",".join(CSV_COLUMNS)
PIXELS_ONLY = ",".join(PIXEL_KEYS)


def pixels(seed: int) -> list[int]:
    return [(seed * 31 + i * 7) % 256 for i in range(784)]


def line(*cells) -> str:
    return ",".join(str(c) for c in cells)


def lenient(tmp_path, text: str | bytes, limit=None, gz=False, chunk_bytes=1 << 24):
    raw = text.encode() if isinstance(text, str) else text
    path = tmp_path / ("rows.csv.gz" if gz else "rows.csv")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return str(path), list(CsvReader(str(path), chunk_bytes=chunk_bytes).lenient_rows(limit))


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("chunk_bytes", [100, 1 << 24])     # lines cut across chunks, or one chunk
def test_good_rows_come_with_their_pixels_label_text_and_line(tmp_path, gz, chunk_bytes):
    text = (BOM.decode() + "id," + HEADER + "\r\n" + line("a", 3, *pixels(1)) + "\r\n\r\n"
            + line("b", ' "Coat" ', *pixels(2)) + "\r\n")
    path, rows = lenient(tmp_path, text, gz=gz, chunk_bytes=chunk_bytes)
    assert [(r.path, r.line, r.number, r.label, r.error) for r in rows] == [
        (path, 2, 1, "3", None), (path, 4, 3, "Coat", None)]    # extra column ignored, blank line counted
    np.testing.assert_array_equal(rows[1].pixels, pixels(2))


def test_the_label_column_is_optional(tmp_path):
    _, rows = lenient(tmp_path, PIXELS_ONLY + "\n" + line(*pixels(5)) + "\n")
    assert len(rows) == 1 and rows[0].label is None and rows[0].error is None
    np.testing.assert_array_equal(rows[0].pixels, pixels(5))


def test_bad_rows_name_row_and_column_and_the_rows_after_them_are_read(tmp_path):
    good = line(1, *pixels(0))
    bad_cell = pixels(0)
    bad_cell[299] = "3x"
    text = "\n".join([HEADER, good, line(2, *pixels(0)[:-1]), line(3, *bad_cell),
                      line(4, *pixels(0)[:-1], "99999999999999999999"), good]) + "\n"
    path, rows = lenient(tmp_path, text)
    assert [r.error is None for r in rows] == [True, False, False, False, True]
    assert (rows[1].number, rows[1].field, rows[1].error) == (2, None, "784 values, the header has 785 columns")
    assert (rows[2].line, rows[2].field, rows[2].error) == (4, "pixel300", "pixel300 is '3x', not an integer")
    assert rows[3].field == "pixel784" and "outside the 64-bit integer range" in rows[3].error
    assert all(r.path == path for r in rows)


def test_limit_counts_rows_good_or_bad_and_blank_lines(tmp_path):
    text = "\n".join([HEADER, line(1, *pixels(0)), "x", "", line(2, *pixels(1)), line(3, *pixels(2))]) + "\n"
    assert [r.number for r in lenient(tmp_path, text, limit=2)[1]] == [1, 2]
    assert [r.number for r in lenient(tmp_path, text, limit=4)[1]] == [1, 2, 4]
    assert [r.number for r in lenient(tmp_path, text)[1]] == [1, 2, 4, 5]


@pytest.mark.parametrize("text, words", [
    ("", "empty CSV file"),
    ("\n \n", "empty CSV file"),
    ("label,pixel1\n3,0\n", "CSV header lacks 783 pixel columns (first: pixel2)"),
    ("label;pixel1;pixel2\n", "separated by semicolons"),
    (b"\xff\xfel\x00a\x00", "binary content"),
])
def test_a_problem_of_the_whole_file_is_one_row_without_a_number(tmp_path, text, words):
    path, rows = lenient(tmp_path, text)
    assert len(rows) == 1 and rows[0].number is None and words in rows[0].error, rows
    assert not rows[0].error.startswith(path)              # the path is the row's, not repeated


def test_a_broken_gzip_stream_is_reported_not_raised(tmp_path):
    raw = gzip.compress((HEADER + "\n" + line(1, *pixels(0)) + "\n").encode() * 50)
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(raw[:len(raw) // 2])
    rows = list(CsvReader(str(path), chunk_bytes=1000).lenient_rows())
    assert rows[-1].number is None and "not a readable gzip file" in rows[-1].error


@pytest.mark.parametrize("cell", ["", " ", "-", "1 2", "0x1F", "1.0", '"3', "++1", "١"])
def test_a_cell_refused_by_the_strict_reading_is_refused_by_the_lenient_one_with_the_same_reason(tmp_path, cell):
    values = pixels(0)
    values[9] = cell
    text = HEADER + "\n" + line(1, *values) + "\n"
    with pytest.raises(CsvFormatError, match="column 'pixel10'"):
        parse_table("strict.csv", text.encode())
    _, rows = lenient(tmp_path, text)
    assert rows[0].field == "pixel10" and rows[0].error.endswith(cell_problem(cell.encode()))


@pytest.mark.parametrize("cell, value", [(" 7", 7), ('"8"', 8), (' " 9 " ', 9), ("+10", 10), ("-1", -1)])
def test_a_cell_the_strict_reading_accepts_reads_the_same_leniently(tmp_path, cell, value):
    values = pixels(0)
    values[0] = cell
    text = HEADER + "\n" + line(1, *values) + "\n"
    strict = parse_table("strict.csv", text.encode()).values[0, 1:]
    row = lenient(tmp_path, text)[1][0]
    assert row.error is None and row.pixels[0] == value
    np.testing.assert_array_equal(row.pixels, strict)
