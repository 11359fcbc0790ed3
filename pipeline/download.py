"""`fmnist data download`: the official IDX files, checked and converted to the Kaggle CSV layout.

The pipeline reads CSVs (`label,pixel1..pixel784`); Zalando publishes the data as four gzipped
IDX files with MD5 checksums. This module fetches them, refuses any file whose checksum differs,
and writes `fashion-mnist_train.csv.gz` and `fashion-mnist_test.csv.gz`. Without network access it
fails at once and says how to supply the CSVs instead.
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import socket
import struct
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from components.errors import FmnistError
from schema.contract import CSV_COLUMNS

log = logging.getLogger(__name__)

MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# Published in github.com/zalandoresearch/fashion-mnist (README, "Get the Data").
FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
OFFLINE_HELP = ("supply the CSVs yourself instead: put a training and a test CSV in the Kaggle "
                "layout (label,pixel1..pixel784; e.g. Kaggle's fashion-mnist_train.csv and "
                "fashion-mnist_test.csv, optionally gzipped) in one directory and run "
                "`fmnist run --data DIR`")


class DownloadError(FmnistError, RuntimeError):
    """The data could not be fetched or did not verify; the message says what to do."""

    exit_code = 1  # `fmnist data download` has exited 1 on a failed download since it was written


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a uint8 array of the shape its header declares."""
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise DownloadError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise DownloadError(f"{path}: IDX type 0x{dtype_code:02x} is not unsigned bytes")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DownloadError(f"{path}: header says {shape} but holds {body.size} values")
    return body.reshape(shape)


def write_csv(images: np.ndarray, labels: np.ndarray, out: Path) -> None:
    """Kaggle layout, gzipped with mtime 0 so the same input always gives the same bytes."""
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DownloadError(f"images {images.shape} and labels {labels.shape} do not pair up")
    table = np.concatenate([labels.reshape(-1, 1), images.reshape(len(images), -1)], axis=1)
    tmp = out.with_name(out.name + ".partial")
    with gzip.GzipFile(tmp, "wb", mtime=0) as f:
        f.write((",".join(CSV_COLUMNS) + "\n").encode())
        for start in range(0, len(table), 5000):
            chunk = table[start:start + 5000]
            f.write(("\n".join(",".join(map(str, row)) for row in chunk.tolist()) + "\n").encode())
    os.replace(tmp, out)


Fetch = Callable[[str, Path], None]


def _http_fetch(url: str, dest: Path, timeout: float = 20.0) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        raise DownloadError(f"cannot download {url} ({getattr(e, 'reason', e)}); {OFFLINE_HELP}") from None


def download(out_dir: Path, mirror: str = MIRROR, fetch: Fetch = _http_fetch,
             checksums: Mapping[str, str] = FILES) -> dict[str, Path]:
    """Fetch (or reuse verified) IDX files into out_dir/raw, then write the two CSVs."""
    raw = out_dir / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, want in checksums.items():
        path = raw / name
        if path.exists() and md5(path) == want:
            log.info("%s already downloaded and verified", path)
            continue
        log.info("downloading %s%s", mirror, name)
        partial = path.with_name(name + ".partial")
        fetch(mirror + name, partial)
        got = md5(partial)
        if got != want:
            partial.unlink()
            raise DownloadError(f"{name}: MD5 {got} does not match the published {want}; "
                                "the file was corrupted or the mirror changed it. Nothing was kept.")
        os.replace(partial, path)
    written = {}
    for split, (images_name, labels_name) in SPLITS.items():
        out = out_dir / f"fashion-mnist_{split}.csv.gz"
        write_csv(read_idx(raw / images_name), read_idx(raw / labels_name), out)
        log.info("wrote %s", out)
        written[split] = out
    return written
