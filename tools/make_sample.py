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

PER_CLASS = {"train": 250, "test": 60}


def take_balanced(src: Path, dst: Path, per_class: int) -> int:
    counts: collections.Counter[str] = collections.Counter()
    lines = []
    with gzip.open(src, "rt") as f:
        lines.append(f.readline())
        for line in f:
            label = line.split(",", 1)[0]
            if counts[label] < per_class:
                counts[label] += 1
                lines.append(line)
            if len(counts) == 10 and min(counts.values()) >= per_class:
                break
    with gzip.GzipFile(dst, "wb", mtime=0) as out:
        out.write("".join(lines).encode())
    return sum(counts.values())


def main(src_dir: str, dst_dir: str) -> None:
    for split, per_class in PER_CLASS.items():
        name = f"fashion-mnist_{split}.csv.gz"
        n = take_balanced(Path(src_dir) / name, Path(dst_dir) / name, per_class)
        print(f"{dst_dir}/{name}: {n} rows")


if __name__ == "__main__":
    main(*sys.argv[1:3])
