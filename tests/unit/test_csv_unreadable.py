"""No Python, NumPy, Beam, zlib or csv-module text ever reaches the user, whatever the input file.

A generated corpus of hostile files -- random bytes, text and mutations of a valid CSV, cut and
corrupt gzip streams, binary formats saved as .csv, UTF-16/UTF-32, other separators, huge lines,
cells and headers, stray quotes and NULs, empty and header-only files, a directory and a missing
path -- is read by the strict reader (two chunk sizes) and the lenient one (`fmnist predict`).
Every outcome is a table or a CsvFormatError whose message names the file in the project's words;
the lenient reading never raises and its errors are worded the same way. None of these may need
the "unforeseen" fallback: an error that does (injected below) becomes "could not read FILE:
<reason>" with its traceback in the log.
"""
from __future__ import annotations

import gzip
import logging
import random
import re
import struct
import zlib

import pytest

from components.data_input import csv_table
from components.data_input.csv_table import CsvFormatError, CsvReader
from data_input_helpers import HEADER, csv_text, make_row

VALID = csv_text([make_row(i % 10, i) for i in range(4)])
# What Python, NumPy, Beam, zlib, gzip and the csv module say; the project never repeats it.
FOREIGN = re.compile(
    r"Traceback|[A-Z][A-Za-z]*(Error|Exception|Warning)\b|Errno|errno|codec|can't decode|ndarray|"
    r"contiguous|dtype|numpy|new-line character|field larger than|line contains NUL|invalid literal|"
    r"could not convert|end-of-stream|CRC check|Not a gzipped|invalid (stored )?block|incorrect header|"
    r"invalid distance|NoneType|has no attribute|out of range for|index \d+ is out|unpack|"
    r"unexpected error in the CSV reader")


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _corrupt_gzip_middle(data: bytes) -> bytes:
    blob = bytearray(_gz(data))
    for i in range(len(blob) // 2, len(blob) // 2 + 8):
        blob[i] ^= 0xA5
    return bytes(blob)


def _bad_crc(data: bytes) -> bytes:
    blob = bytearray(_gz(data))
    blob[-8:-4] = struct.pack("<I", (zlib.crc32(data) + 1) & 0xFFFFFFFF)
    return bytes(blob)


def _mutated(rng: random.Random, text: bytes) -> bytes:
    data = bytearray(text)
    for _ in range(rng.randrange(1, 6)):
        i = rng.randrange(len(data))
        op = rng.randrange(3)
        if op == 0:
            data[i] = rng.randrange(256)
        elif op == 1:
            data.insert(i, rng.choice(b'\x00\r\n",;\t -+.e\xff\xc3'))
        else:
            del data[i]
    return bytes(data)


def corpus() -> dict[str, bytes]:
    """name -> the file's bytes (seeded)."""
    rng = random.Random(33)
    valid = VALID.encode()
    files: dict[str, bytes] = {
        "empty": b"", "only a BOM": csv_table.BOM, "only blank lines": b"\n \r\n\t\r\r",
        "only line ends": b"\r" * 50 + b"\n" * 50, "only commas": b"," * 5000,
        "header only": HEADER.encode(), "header only, CR": HEADER.encode() + b"\r",
        "label only": b"label\n3\n",
        "UTF-16 LE with BOM": VALID.encode("utf-16"), "UTF-16 BE without BOM": VALID.encode("utf-16-be"),
        "UTF-32": VALID.encode("utf-32"),
        "Latin-1 header": ("\u00e9tiquette," + HEADER[6:] + "\n").encode("latin-1") + valid.split(b"\n", 1)[1],
        "Latin-1 cell": valid.replace(b",0,", b",\xe90,", 1),
        "semicolons": VALID.replace(",", ";").encode(), "tabs": VALID.replace(",", "\t").encode(),
        "pipes": VALID.replace(",", "|").encode(), "spaces": VALID.replace(",", " ").encode(),
        "PNG": b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(2000)),
        "xlsx (zip)": b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(2000)),
        "PDF": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(rng.randrange(256) for _ in range(2000)),
        "ELF": b"\x7fELF\x02\x01\x01" + bytes(2000),
        "NUL in a row": valid.replace(b"\n3,", b"\n3\x00,", 1),
        "quoted comma": valid.replace(b"\n", b'\n"1,2",', 1),
        "quoted line break": valid.replace(b"\n", b'\n"1\n2",', 2),
        "unbalanced quote": valid.replace(b"\n", b'\n"', 2),
        "floats and NaN": valid.replace(b",1,", b",1.5,").replace(b",2,", b",nan,"),
        "a 100,000-digit cell": valid.replace(b",0,", b"," + b"9" * 100_000 + b",", 1),
        "a 100,000-letter cell": valid.replace(b",0,", b"," + b"x" * 100_000 + b",", 1),
        "a header of 300,000 names": ",".join(f"c{i}" for i in range(300_000)).encode() + b"\n1,2\n",
        "a header of 300,000 'label's": b",".join([b"label"] * 300_000) + b"\n",
        "a 2-MiB line without a line end (limit lowered to 1 MiB)": b"1," * (1 << 20),
        "a row of 100,000 cells": valid + b",".join([b"1"] * 100_000) + b"\n",
        "gzip, cut in the header": _gz(valid)[:30], "gzip, cut in the rows": _gz(valid)[:-40],
        "gzip header only": _gz(valid)[:10], "gzip magic only": b"\x1f\x8b",
        "gzip, corrupt middle": _corrupt_gzip_middle(valid), "gzip, wrong CRC": _bad_crc(valid),
        "gzip of random bytes": _gz(bytes(rng.randrange(256) for _ in range(3000))),
        "gzip of gzip": _gz(_gz(valid)), "gzip then junk": _gz(valid) + b"junk after the stream",
        "gzip of UTF-16": _gz(VALID.encode("utf-16")), "gzip of nothing": _gz(b""),
    }
    for i in range(12):
        files[f"random bytes {i}"] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 10, 3000, 70000])))
    for i in range(8):
        files[f"random CSV-ish text {i}"] = "".join(
            rng.choice('0123456789,,,,\n\r" -+;\t.label pixel') for _ in range(rng.choice([5, 500, 20000]))).encode()
    for i in range(24):
        mutated = _mutated(rng, valid)
        files[f"mutated valid CSV {i}"] = _gz(mutated) if i % 3 == 0 else mutated
    return files


CORPUS = corpus()


def _check_message(message: str, path: str, case: str) -> None:
    assert path in message, (case, message)
    assert not FOREIGN.search(message), (case, FOREIGN.search(message).group(0), message[:500])
    assert len(message) < 3000, (case, len(message))       # cells and names are shown cut


def _read(path: str, case: str) -> None:
    for chunk_bytes in (4096, csv_table.CHUNK_BYTES):
        try:
            for _ in CsvReader(path, chunk_bytes=chunk_bytes):
                pass
        except CsvFormatError as e:
            _check_message(str(e), path, case)
    errors = [r.error for r in CsvReader(path).lenient_rows() if r.error]       # never raises
    for error in errors[:50]:
        assert not FOREIGN.search(error), (case, FOREIGN.search(error).group(0), error[:500])


@pytest.mark.parametrize("case", list(CORPUS))
def test_every_hostile_file_is_read_or_refused_in_the_projects_words(tmp_path, monkeypatch, case):
    monkeypatch.setattr(csv_table, "MAX_LINE_BYTES", 1 << 20)
    path = tmp_path / ("junk.csv.gz" if "gzip" in case else "junk.csv")
    path.write_bytes(CORPUS[case])
    _read(str(path), case)


@pytest.mark.parametrize("make, reason", [
    (lambda tmp: tmp / "missing_test.csv", "the file does not exist"),
    (lambda tmp: tmp, "it is a directory, not a file"),
])
def test_a_path_that_cannot_be_opened_is_could_not_read_with_the_reason(tmp_path, make, reason):
    path = str(make(tmp_path))
    with pytest.raises(CsvFormatError) as err:
        list(CsvReader(path))
    assert str(err.value) == f"could not read {path}: {reason}"
    (row,) = CsvReader(path).lenient_rows()
    assert (row.number, row.error) == (None, f"could not read the file: {reason}")


def test_an_unforeseen_error_is_could_not_read_file_and_its_traceback_is_logged(tmp_path, monkeypatch, caplog):
    path = tmp_path / "fine.csv"
    path.write_text(VALID)

    def broken(*args, **kwargs):
        raise RuntimeError("numpy internals exploded")

    monkeypatch.setattr(csv_table.np, "fromstring", broken)
    with caplog.at_level(logging.INFO, logger=csv_table.__name__), pytest.raises(CsvFormatError) as err:
        list(CsvReader(str(path)))
    assert str(err.value) == (f"could not read {path}: unexpected error in the CSV reader (a bug: "
                              "`fmnist --verbose` logs the details)")
    assert err.value.__cause__ is None and err.value.__suppress_context__   # the runner shows this one
    assert "numpy internals exploded" in caplog.text and "RuntimeError" in caplog.text


def test_an_unforeseen_error_in_examplegens_encoding_names_the_file(tmp_path, monkeypatch):
    """Past the reader (encoding, hashing): ExampleGen's per-file report still says could not read FILE."""
    from components.data_input import csv_example_gen

    path = tmp_path / "fine.csv"
    path.write_text(VALID)

    def broken(values):
        raise ValueError("ndarray is not C-contiguous")

    monkeypatch.setattr(csv_example_gen, "image_hashes", broken)
    outputs = list(csv_example_gen._ParseFile().process(("train", str(path))))
    report = outputs[-1].value
    assert report["error"].startswith(f"could not read {path}: unexpected error")
    assert not FOREIGN.search(report["error"].replace("CSV reader", "")), report["error"]
