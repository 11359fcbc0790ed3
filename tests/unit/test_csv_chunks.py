"""The CSV reader in chunks of rows: whatever the chunk size (smaller than a row, a few rows, the
whole file), plain or gzipped, it reads the same table with the same line numbers and gives the
same verdict and message as one piece; and its memory does not grow with the file."""
import tracemalloc

import numpy as np
import pytest

from components.data_input.csv_table import BOM, CsvFormatError, CsvReader, parse_table
from data_input_helpers import HEADER, csv_text, features, make_row, write

ROWS = [make_row(i % 10, i) for i in range(40)]
CHUNK_SIZES = [7, 1000, 5000, 30000, 1 << 24]      # below one row (~2.7 KB), a few rows, one chunk


def _read(path: str, chunk_bytes: int) -> tuple[np.ndarray, np.ndarray, CsvReader]:
    reader = CsvReader(path, chunk_bytes=chunk_bytes)
    chunks = list(reader)
    return (np.concatenate([c.values for c in chunks]), np.concatenate([c.line_numbers for c in chunks]),
            reader)


VARIANTS = {
    "plain": lambda: csv_text(ROWS).encode(),
    "BOM + CRLF": lambda: BOM + csv_text(ROWS, end="\r\n").encode(),
    "no newline at the end, CRLF": lambda: csv_text(ROWS, end="\r\n")[:-2].encode(),
    "blank lines everywhere": lambda: ("\n \n" + HEADER + "\n\n" + "".join(
        ",".join(map(str, r)) + ("\n\t\r\n" if i % 7 == 0 else "\n") for i, r in enumerate(ROWS)) + "\n\n").encode(),
    "spaces and quotes": lambda: (HEADER + "\n" + "".join(
        ",".join(f' "{v}" ' for v in r) + "\n" for r in ROWS)).encode(),
    # Excel's "CSV (Macintosh)"; chunk size 7 cuts between many a CR and the next byte
    "CR-only line ends, BOM": lambda: BOM + csv_text(ROWS, end="\r").encode(),
    "LF, CRLF and CR mixed, blank lines": lambda: (HEADER + "\r\n" + "".join(
        ",".join(map(str, r)) + ("\r", "\n", "\r\n", "\r\r", "\n\r\n")[i % 5] for i, r in enumerate(ROWS))).encode(),
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", list(VARIANTS))
def test_every_chunk_size_reads_the_same_table_as_one_piece(tmp_path, case, gz):
    raw = VARIANTS[case]()
    whole = parse_table("one.csv", raw)
    np.testing.assert_array_equal(whole.values, np.array(ROWS))
    path = write(tmp_path / "a.csv", raw, gz)
    for size in CHUNK_SIZES:
        values, lines, reader = _read(path, size)
        np.testing.assert_array_equal(values, whole.values, err_msg=f"chunk {size}")
        np.testing.assert_array_equal(lines, whole.line_numbers, err_msg=f"chunk {size}")
        assert (reader.rows, reader.blank_lines, reader.byte_order_mark, reader.line_ends) == (
            len(ROWS), whole.blank_lines, whole.byte_order_mark, whole.line_ends), size


def _refused(path: str, chunk_bytes: int) -> tuple[str, int, int]:
    """(message, rows refused, rows yielded before the verdict)."""
    yielded = 0
    with pytest.raises(CsvFormatError) as err:
        for chunk in CsvReader(path, chunk_bytes=chunk_bytes):
            yielded += len(chunk.values)
    return str(err.value), err.value.rows_refused, yielded


@pytest.mark.parametrize("case, broken_rows", [
    ("labels blanked in every fifth row", {i: [" "] + make_row(0, i)[1:] for i in range(3, 40, 5)}),
    ("cells missing late in the file", {30: make_row(1, 30)[:-1], 38: make_row(1, 38) + [5]}),
    ("a bad cell, then a line with a wrong cell count", {5: [1, "x"] + make_row(1, 5)[2:], 33: [1, 2]}),
])
def test_refusals_count_the_whole_file_whatever_the_chunk_size(tmp_path, case, broken_rows):
    rows = [broken_rows.get(i, r) for i, r in enumerate(ROWS)]
    raw = csv_text(rows).encode()
    with pytest.raises(CsvFormatError) as whole:
        parse_table(str(tmp_path / "b.csv"), raw)
    path = write(tmp_path / "b.csv", raw)
    for size in CHUNK_SIZES:
        message, refused, yielded = _refused(path, size)
        assert (message, refused) == (str(whole.value), whole.value.rows_refused), size
        assert yielded < min(broken_rows) + 1, (size, yielded)   # nothing after the first bad row's chunk
    assert "b.csv" in message and any(f"line {r + 2} " in message for r in broken_rows)


def test_memory_stays_at_a_chunk_while_one_piece_grows_with_the_file(tmp_path):
    """tracemalloc peaks (NumPy's buffers included) of the same 20 MB file, side by side."""
    line = ",".join(map(str, make_row(3, 1))) + "\n"
    path = write(tmp_path / "big.csv", HEADER + "\n" + line * 8000)
    chunk = 1 << 20

    def peak(read) -> int:
        tracemalloc.start()
        try:
            read()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def chunked() -> None:
        rows = sum(len(c.values) for c in CsvReader(path, chunk_bytes=chunk))
        assert rows == 8000

    streamed = peak(chunked)
    whole = peak(lambda: parse_table(path, open(path, "rb").read()))
    assert whole > 100 * chunk                   # text + joined copy + int64 table of 8,000 rows
    assert streamed < 12 * chunk < whole / 8, (streamed, whole)


# --- ExampleGen's write on DirectRunner: TFX's WriteSplit minus its Reshuffle -------------------

@pytest.mark.parametrize("args, direct", [
    ([], True), (["--direct_running_mode=in_memory", "--direct_num_workers=1"], True),
    (["--runner=DirectRunner"], True), (["--runner=DataflowRunner", "--project=p"], False),
    (["--runner=FlinkRunner"], False), (["--runner=SparkRunner"], False)])
def test_only_direct_runner_skips_the_reshuffle(args, direct):
    from components.data_input.split_writer import is_direct_runner
    assert is_direct_runner(args) is direct


def test_direct_runner_write_gives_tfx_writesplits_files_record_for_record(tmp_path):
    """The same PCollection written by TFX's WriteSplit (with its Reshuffle) and without it, on
    the in-memory DirectRunner: the same file names and the same records in the same order."""
    import glob
    import os

    import apache_beam as beam
    import tensorflow as tf
    from tfx.components.example_gen.write_split import WriteSplit

    from components.data_input.csv_example_gen import csv_file_to_examples
    from components.data_input.split_writer import WriteSplitWithoutReshuffle

    path = write(tmp_path / "a.csv", csv_text([make_row(i % 10, i) for i in range(3000)]))
    with beam.Pipeline(argv=["--direct_running_mode=in_memory", "--direct_num_workers=1"]) as p:
        examples = p | beam.Create([path]) | beam.FlatMap(csv_file_to_examples)
        _ = examples | "tfx" >> WriteSplit(str(tmp_path / "tfx"), "tfrecords_gzip")
        _ = examples | "ours" >> WriteSplitWithoutReshuffle(str(tmp_path / "ours"))

    def records(out: str) -> tuple[list[str], list[bytes]]:
        files = sorted(glob.glob(os.path.join(out, "*")))
        return ([os.path.basename(f) for f in files],
                [r.numpy() for f in files for r in tf.data.TFRecordDataset(f, compression_type="GZIP")])

    tfx_files, tfx_records = records(str(tmp_path / "tfx"))
    our_files, our_records = records(str(tmp_path / "ours"))
    assert our_files == tfx_files and our_records == tfx_records
    # file order, every row once (compared decoded: a map's serialized entry order may vary)
    assert [features(r) for r in our_records] == [features(r) for r in csv_file_to_examples(path)]
