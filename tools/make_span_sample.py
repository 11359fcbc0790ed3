"""Builds data/sample-spans/ from the committed sample: two spans and a fixed holdout.

    python tools/make_span_sample.py data/sample data/sample-spans

Each class's rows are dealt out in file order: the training rows in turn to span 1 and span 2
(125 per class each), the test rows in turn to span 1, span 2 and the holdout (20 per class
each). No row is in two places, every part is class-balanced (so the drift check between the
spans passes), and the gzip files are written with mtime=0, so a rebuild is byte-identical.
"""
from __future__ import annotations

import gzip
import sys
from pathlib import Path

NAMES = {"train": "fashion-mnist_train.csv.gz", "test": "fashion-mnist_test.csv.gz"}


def _rows(path: Path) -> tuple[str, list[str]]:
    with gzip.open(path, "rt", newline="") as f:
        lines = f.read().splitlines()
    return lines[0], lines[1:]


def _write(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", mtime=0) as out:
        out.write(("\n".join([header, *rows]) + "\n").encode())


def deal(rows: list[str], parts: list[str]) -> dict[str, list[str]]:
    """Per class, the class's rows in file order dealt to `parts` in turn."""
    out: dict[str, list[str]] = {p: [] for p in parts}
    seen: dict[str, int] = {}
    for row in rows:
        label = row.split(",", 1)[0]
        n = seen.get(label, 0)
        seen[label] = n + 1
        out[parts[n % len(parts)]].append(row)
    return out


def main(src: str, dst: str) -> None:
    src_dir, dst_dir = Path(src), Path(dst)
    header, train = _rows(src_dir / NAMES["train"])
    for part, rows in deal(train, ["span-1", "span-2"]).items():
        _write(dst_dir / part / NAMES["train"], header, rows)
    header, test = _rows(src_dir / NAMES["test"])
    for part, rows in deal(test, ["span-1", "span-2", "holdout"]).items():
        _write(dst_dir / part / NAMES["test"], header, rows)
    for path in sorted(dst_dir.rglob("*.csv.gz")):
        print(path)


if __name__ == "__main__":
    main(*sys.argv[1:3])
