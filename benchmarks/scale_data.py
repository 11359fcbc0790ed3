"""Nx training data, made reproducibly from the real training CSV: each image plus shifted copies.

Copy 0 is the original row; copy j (j >= 1) is the same image translated by the j-th offset of
`SHIFTS` (nearest first: one pixel right/left/down/up, then diagonals, then two pixels ...),
with the uncovered border filled with 0 (the background). Labels are unchanged. Rows are written
copy by copy (all originals, then all first shifts, ...), so the file is deterministic and any
prefix of it is a valid, class-balanced training set. The test CSV is linked unchanged.

    python benchmarks/scale_data.py --factor 10 --out /tmp/fmnist-scale

writes /tmp/fmnist-scale/x10/{fashion-mnist_train.csv, fashion-mnist_test.csv.gz} (plain CSV for
the big file: gzip would only add minutes to writing it; ExampleGen reads both). Never commit
these files.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SIDE = 28
# Every translation within 2 pixels but none, nearest first: room for factors up to 25.
SHIFTS: tuple[tuple[int, int], ...] = tuple(sorted(
    ((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy, dx) != (0, 0)),
    key=lambda s: (s[0] ** 2 + s[1] ** 2, s[0], s[1])))
MAX_FACTOR = len(SHIFTS) + 1
CHUNK_ROWS = 10_000

# "0," .. "255," as fixed 4-byte cells padded with NUL, so a whole block of rows is formatted with
# one fancy-index and one boolean mask instead of 785 Python str() calls per row.
_CELLS = np.zeros((256, 4), np.uint8)
for _v in range(256):
    _text = f"{_v},".encode()
    _CELLS[_v, :len(_text)] = np.frombuffer(_text, np.uint8)


def read_csv_gz(path: Path) -> tuple[bytes, np.ndarray]:
    """Header line and the [rows, 785] uint8 table (label, pixel1..pixel784)."""
    with gzip.open(path, "rb") as f:
        header = f.readline()
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    return header, table


def shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """[n, 28, 28] images translated by (dy, dx), zero-filled where nothing moves in."""
    out = np.zeros_like(images)
    ys, yd = (slice(0, SIDE - dy), slice(dy, SIDE)) if dy >= 0 else (slice(-dy, SIDE), slice(0, SIDE + dy))
    xs, xd = (slice(0, SIDE - dx), slice(dx, SIDE)) if dx >= 0 else (slice(-dx, SIDE), slice(0, SIDE + dx))
    out[:, yd, xd] = images[:, ys, xs]
    return out


def format_rows(table: np.ndarray) -> bytes:
    """CSV text of a [rows, 785] uint8 table, one line per row."""
    cells = _CELLS[table]                       # [rows, 785, 4]
    cells[:, -1, :] = np.where(cells[:, -1, :] == ord(","), ord("\n"), cells[:, -1, :])
    flat = cells.reshape(-1)
    return flat[flat != 0].tobytes()


def copy_rows(table: np.ndarray, copy: int) -> np.ndarray:
    """Copy `copy` of the table: 0 is the original, j >= 1 shifted by SHIFTS[j - 1]."""
    if copy == 0:
        return table
    dy, dx = SHIFTS[copy - 1]
    images = shift(table[:, 1:].reshape(-1, SIDE, SIDE), dy, dx)
    return np.concatenate([table[:, :1], images.reshape(len(table), -1)], axis=1)


def make(source: Path, out_root: Path, factor: int) -> Path:
    """Writes <out_root>/x<factor>/ (train CSV with `factor` copies, test CSV linked); returns it."""
    if not 1 <= factor <= MAX_FACTOR:
        raise ValueError(f"--factor must be in 1..{MAX_FACTOR}, got {factor}")
    target = out_root / f"x{factor}"
    train = target / "fashion-mnist_train.csv"
    done = target / ".complete"
    made_from = f"from {source.resolve()}:"
    if done.exists() and done.read_text().startswith(made_from):
        log.info("%s already made", target)
        return target
    if target.exists():  # made from another source (or half made): the copies would be of other rows
        shutil.rmtree(target)
    target.mkdir(parents=True)
    header, table = read_csv_gz(source / "fashion-mnist_train.csv.gz")
    digest = hashlib.sha256()
    with open(train, "wb") as f:
        f.write(header)
        for copy in range(factor):
            rows = copy_rows(table, copy)
            for start in range(0, len(rows), CHUNK_ROWS):
                text = format_rows(rows[start:start + CHUNK_ROWS])
                digest.update(text)
                f.write(text)
    test = target / "fashion-mnist_test.csv.gz"
    if not test.exists():
        os.symlink((source / "fashion-mnist_test.csv.gz").resolve(), test)
    done.write_text(f"{made_from} {factor * len(table)} rows sha256 {digest.hexdigest()}\n")
    log.info("%s: %d training rows", train, factor * len(table))
    return target


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data",
                   default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fashion-mnist"))
    p.add_argument("--out", default="/tmp/fmnist-scale")
    p.add_argument("--factor", type=int, action="append", required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for factor in args.factor:
        print(make(Path(args.data), Path(args.out), factor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
