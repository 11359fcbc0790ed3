"""Served traffic for monitor tests: the sample's test rows, as they are or changed the ways
photos go wrong, sent to a real model server on 127.0.0.1 that logs every request."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from pipeline.config import SAMPLE_DATA

TEST_CSV = SAMPLE_DATA / "fashion-mnist_test.csv.gz"


def test_images(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(labels [N], images [N, 28, 28] uint8) of the committed sample's test CSV."""
    with gzip.open(TEST_CSV, "rt") as f:
        table = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.int64)
    table = table[:limit] if limit else table
    return table[:, 0], table[:, 1:].reshape(-1, 28, 28).astype(np.uint8)


def inverted(images: np.ndarray) -> np.ndarray:
    """A dark garment on a light background, as a phone photo of it on a white table looks."""
    return (255 - images.astype(np.int64)).astype(np.uint8)


def shifted(images: np.ndarray, pixels: int = 7) -> np.ndarray:
    """The garment moved right and down (a crop that is off the centre)."""
    out = np.zeros_like(images)
    out[:, pixels:, pixels:] = images[:, :-pixels, :-pixels]
    return out


def brighter(images: np.ndarray, offset: int = 80) -> np.ndarray:
    """Over-exposed: every grey value raised (clipped at 255)."""
    return np.clip(images.astype(np.int64) + offset, 0, 255).astype(np.uint8)


def cropped(images: np.ndarray, rows: int = 3) -> np.ndarray:
    """Only the top rows of the picture: a crop that missed the garment (near-empty image)."""
    out = np.zeros_like(images)
    out[:, :rows, :] = images[:, :rows, :]
    return out


def serve_and_log(serving_model_dir: str, log_prefix: Path, batches: list[np.ndarray], model: str = "fmnist",
                  rate: float = 1.0, batch_size: int = 16) -> None:
    """Serve the pushed model with request logging and send `batches` of images over gRPC."""
    from serving.client import ServingClient
    from serving.model_manager import ModelConfig
    from serving.request_log import LoggingConfig
    from serving.server import ModelServer

    config = ModelConfig(model, serving_model_dir, logging=LoggingConfig(str(log_prefix), rate))
    with ModelServer([config], port=0, rest_port=None, poll_seconds=0) as server:
        client = ServingClient(server.target, model=model)
        try:
            for images in batches:
                for start in range(0, len(images), batch_size):
                    client.predict_images(images[start:start + batch_size])
        finally:
            client.close()
