"""benchmarks/scale_data.py: the Nx data is remade when asked for from another source.

A run on the committed sample once reused the full data's cached 1x copy, because the cache marker
did not say what it was made from; the benchmark then measured rows it was not given.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from benchmarks import scale_data

HEADER = b"label," + b",".join(b"pixel%d" % i for i in range(1, 785)) + b"\n"


def write_source(root: Path, labels: list[int]) -> Path:
    root.mkdir(parents=True)
    rows = np.zeros((len(labels), 785), np.uint8)
    rows[:, 0] = labels
    rows[:, 1 + 14 * 28 + 14] = 200  # one bright pixel mid-image, so shifted copies differ
    for name in ("fashion-mnist_train.csv.gz", "fashion-mnist_test.csv.gz"):
        with gzip.open(root / name, "wb") as f:
            f.write(HEADER)
            f.write(b"".join(b",".join(b"%d" % v for v in row) + b"\n" for row in rows))
    return root


def labels_of(target: Path) -> list[int]:
    lines = (target / "fashion-mnist_train.csv").read_bytes().splitlines()[1:]
    return [int(line.split(b",", 1)[0]) for line in lines]


def test_nx_data_is_made_again_from_another_source(tmp_path: Path) -> None:
    first = write_source(tmp_path / "a", [1, 2])
    second = write_source(tmp_path / "b", [3, 4, 5])
    out = tmp_path / "out"

    assert labels_of(scale_data.make(first, out, 2)) == [1, 2, 1, 2]
    again = scale_data.make(first, out, 2)                 # same source: the cache is used
    assert labels_of(again) == [1, 2, 1, 2]
    assert labels_of(scale_data.make(second, out, 2)) == [3, 4, 5, 3, 4, 5]
    assert (out / "x2" / "fashion-mnist_test.csv.gz").resolve() == (second / "fashion-mnist_test.csv.gz").resolve()
