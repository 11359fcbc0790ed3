"""A CsvExampleGen executor that reads the Kaggle pixel CSVs fast and reads them gzipped.

Why not the stock CsvExampleGen: it parses every cell in Python (~150 rows/s on 785 columns here,
6.7 min for the 60,000-row training CSV) and cannot read a gzipped file's header. This executor
keeps the stock component's contract -- the same `Examples` artifact, one int64 feature per column
named by the header, a column that is not all integers written as bytes so that ExampleValidator
reports the type anomaly, an empty cell written as a feature with no value -- but parses each file
with NumPy and serializes whole batches with tfx_bsl's C++ Arrow-to-tf.Example encoder.

A row with the wrong number of cells (a truncated last line, a stray comma) is a broken file rather
than an out-of-domain value, so it stops the run here with the file and line numbers.
"""
from __future__ import annotations

import gzip
import logging
import os
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.io import fileio
from tfx.types import standard_component_specs
from tfx_bsl.coders import example_coder

log = logging.getLogger(__name__)

BATCH_ROWS = 2048
_MAX_REPORTED = 5


class CsvFormatError(ValueError):
    """The CSV cannot be read as a table; the message names the file and lines."""


def read_text(path: str) -> bytes:
    """Whole file, gunzipped when it is gzip (by magic bytes, not by name)."""
    with beam.io.filesystems.FileSystems.open(
            path, compression_type=beam.io.filesystems.CompressionTypes.UNCOMPRESSED) as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise CsvFormatError(f"{path}: not a readable gzip file ({e})") from None
    return raw


def split_rows(path: str, text: bytes) -> tuple[list[str], list[bytes]]:
    """Header names and data lines; raises naming the lines whose cell count differs."""
    lines = text.replace(b"\r\n", b"\n").split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise CsvFormatError(f"{path}: the file is empty (expected a header line)")
    header = [name.strip() for name in lines[0].decode("utf-8", "replace").split(",")]
    if any(not name for name in header):
        raise CsvFormatError(f"{path}, line 1: the header has an empty column name: {header[:5]}...")
    rows = lines[1:]
    if not rows:
        raise CsvFormatError(f"{path}: the file has a header but no data rows")
    expected = len(header) - 1
    bad = [i for i, row in enumerate(rows) if row.count(b",") != expected]
    if bad:
        shown = ", ".join(f"line {i + 2} has {rows[i].count(b',') + 1} cells" for i in bad[:_MAX_REPORTED])
        more = f" (and {len(bad) - _MAX_REPORTED} more lines)" if len(bad) > _MAX_REPORTED else ""
        raise CsvFormatError(
            f"{path}: the header has {len(header)} columns but {shown}{more}; "
            "the file is truncated or has stray or missing commas")
    return header, rows


def parse_columns(rows: list[bytes], ncols: int) -> tuple[np.ndarray | None, dict[int, list[bytes]]]:
    """Integer matrix [rows, cols] on the fast path; otherwise per-column cells for the odd columns.

    Returns (ints, odd): `ints` holds every integer cell (a placeholder where a cell is not one);
    `odd` maps each column with a non-integer or empty cell to all of its raw cells, so that
    column can be written the way the stock CsvExampleGen writes it.
    """
    body = b",".join(rows)
    values = np.fromstring(body, dtype=np.int64, sep=",") if body else np.empty(0, np.int64)
    if values.size == len(rows) * ncols:
        return values.reshape(len(rows), ncols), {}
    # Slow path, only for files with something other than integers in them.
    ints = np.zeros((len(rows), ncols), dtype=np.int64)
    odd: dict[int, list[bytes]] = {}
    for r, row in enumerate(rows):
        for c, cell in enumerate(row.split(b",")):
            try:
                ints[r, c] = int(cell)
            except ValueError:
                odd.setdefault(c, [])
    for c in odd:
        odd[c] = [row.split(b",")[c].strip() for row in rows]
    return ints, odd


def _column(cells: list[bytes], ints: np.ndarray | None) -> pa.Array:
    """One Arrow list column: int64 if every cell is an integer, bytes otherwise; '' -> no value."""
    if ints is not None:
        return pa.ListArray.from_arrays(pa.array(np.arange(len(ints) + 1, dtype=np.int32)), pa.array(ints))
    as_int = True
    for cell in cells:
        if cell:
            try:
                int(cell)
            except ValueError:
                as_int = False
                break
    if as_int:
        return pa.array([[int(c)] if c else [] for c in cells], type=pa.list_(pa.int64()))
    return pa.array([[c] if c else [] for c in cells], type=pa.list_(pa.binary()))


def csv_file_to_examples(path: str) -> Iterator[bytes]:
    """Serialized tf.Examples for one CSV file, in file order."""
    header, rows = split_rows(path, read_text(path))
    ints, odd = parse_columns(rows, len(header))
    for name_index in odd:
        log.warning("%s: column '%s' is not all integers; writing it as bytes so validation flags it",
                    path, header[name_index])
    encoder = example_coder.RecordBatchToExamplesEncoder()
    for start in range(0, len(rows), BATCH_ROWS):
        stop = min(start + BATCH_ROWS, len(rows))
        arrays = [
            _column(odd[c][start:stop], None) if c in odd else _column([], ints[start:stop, c])
            for c in range(len(header))
        ]
        yield from encoder.encode(pa.RecordBatch.from_arrays(arrays, header))
    log.info("%s: %d rows, %d columns", path, len(rows), len(header))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _CsvToSerializedExamples(pipeline: beam.Pipeline, exec_properties: dict[str, Any],
                             split_pattern: str) -> beam.pvalue.PCollection:
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    files = sorted(fileio.glob(pattern))
    if not files:
        raise CsvFormatError(f"no CSV file matches {pattern}")
    return (pipeline
            | "ListFiles" >> beam.Create(files)
            | "ParseCsv" >> beam.FlatMap(csv_file_to_examples))


class Executor(BaseExampleGenExecutor):
    """FileBasedExampleGen executor for integer CSVs (plain or gzipped)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _CsvToSerializedExamples
