"""`fmnist data download` against a real HTTP server on 127.0.0.1 serving IDX files the test makes."""
import functools
import gzip
import hashlib
import http.server
import struct
import threading

import numpy as np
import pytest

from pipeline import download
from serving.ports import free_port


def _idx(array: np.ndarray) -> bytes:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mirror(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (5, 28, 28))),
        "train-labels-idx1-ubyte.gz": _idx(np.array([0, 1, 2, 3, 9])),
        "t10k-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (2, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": _idx(np.array([4, 5])),
    }
    root = tmp_path / "mirror"
    root.mkdir()
    for name, blob in files.items():
        (root / name).write_bytes(blob)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sums = {name: hashlib.md5(blob).hexdigest() for name, blob in files.items()}
    yield f"http://127.0.0.1:{server.server_address[1]}/", sums, root
    server.shutdown()


def test_downloads_verifies_and_converts(tmp_path, mirror):
    url, sums, root = mirror
    written = download.download(tmp_path / "out", mirror=url, checksums=sums)
    with gzip.open(written["train"], "rt") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("label,pixel1,pixel2,") and lines[0].endswith(",pixel784")
    assert len(lines) == 6 and [int(l.split(",")[0]) for l in lines[1:]] == [0, 1, 2, 3, 9]
    images = download.read_idx(root / "train-images-idx3-ubyte.gz")
    assert [int(v) for v in lines[1].split(",")[1:]] == images[0].reshape(-1).tolist()
    with gzip.open(written["test"], "rt") as f:
        assert len(f.read().splitlines()) == 3


def test_checksum_mismatch_keeps_nothing(tmp_path, mirror):
    url, sums, _ = mirror
    sums = dict(sums, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(download.DownloadError, match="does not match the published"):
        download.download(tmp_path / "out", mirror=url, checksums=sums)
    assert not list((tmp_path / "out" / "raw").glob("t10k-labels*"))
    assert not list((tmp_path / "out").glob("*.csv.gz"))


def test_no_network_fails_at_once_with_help(tmp_path):
    port = free_port()  # a port nothing listens on
    with pytest.raises(download.DownloadError, match="supply the CSVs yourself"):
        download.download(tmp_path / "out", mirror=f"http://127.0.0.1:{port}/")


def test_read_idx_rejects_truncated(tmp_path):
    blob = b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"\x01\x02"
    (tmp_path / "x.idx").write_bytes(blob)
    with pytest.raises(download.DownloadError, match="header says"):
        download.read_idx(tmp_path / "x.idx")
