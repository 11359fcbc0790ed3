"""Rebuild the committed class-balanced sample from a full Kaggle-format Fashion-MNIST download.

The sample is the embedded default for `make run` and the tests: small enough to commit (< 2 MB),
balanced so per-class metrics mean something, and written with gzip mtime=0 so it is reproducible.

    python tools/make_sample.py ../shared/data/fashion-mnist data/sample
"""
from __future__ import annotations

import collections
import gzip
import sys
from pathlib import Path

from components.data_input.csv_table import read_table
from schema.contract import CSV_COLUMNS

PER_CLASS = {"train": 250, "test": 60}


def take_balanced(src: Path, dst: Path, per_class: int) -> int:
    """The first `per_class` rows of each class, in file order, read by the pipeline's CSV reader."""
    table = read_table(str(src))
    counts: collections.Counter[int] = collections.Counter()
    keep = []
    for row, label in enumerate(table.values[:, 0].tolist()):
        if counts[label] < per_class:
            counts[label] += 1
            keep.append(row)
        if len(counts) == 10 and min(counts.values()) >= per_class:
            break
    lines = [",".join(CSV_COLUMNS)] + [",".join(map(str, values)) for values in table.values[keep].tolist()]
    with gzip.GzipFile(dst, "wb", mtime=0) as out:
        out.write(("\n".join(lines) + "\n").encode())
    return len(keep)


def main(src_dir: str, dst_dir: str) -> None:
    for split, per_class in PER_CLASS.items():
        name = f"fashion-mnist_{split}.csv.gz"
        n = take_balanced(Path(src_dir) / name, Path(dst_dir) / name, per_class)
        print(f"{dst_dir}/{name}: {n} rows")


if __name__ == "__main__":
    main(*sys.argv[1:3])
