"""Image-level measures the production monitor compares between training and served images.

Why these: a photo pipeline goes wrong in ways a pixel histogram hides or blurs -- a phone photo of
a garment on a white table (light background), an exposure change (mean brightness), a crop that
misses the garment (near-empty image), a garment off the centre (centre offset). Each becomes one
feature per image so TFDV can compute its statistics and compare them with the training images'
under the thresholds kept in schema/schema.pbtxt.

The measures' feature names are part of the contract (schema/contract.py); NumPy only (no TensorFlow).
"""
from __future__ import annotations

import numpy as np

from schema.contract import (
    CENTRE_OFFSET,
    IMAGE_SIZE,
    LIGHT_BACKGROUND,
    MEAN_BRIGHTNESS,
    MEASURES,
    NEAR_EMPTY,
    PREDICTED_LABEL,
)

__all__ = ["CENTRE_OFFSET", "LIGHT_BACKGROUND", "MEAN_BRIGHTNESS", "MEASURES", "NEAR_EMPTY", "PREDICTED_LABEL",
           "image_measures"]

LIGHT_BORDER_LEVEL = 128   # border mean above this: light background (training images: none)
INK_LEVEL = 25             # a pixel above this grey value counts as ink
NEAR_EMPTY_INK_SHARE = 0.05  # fewer than 5% ink pixels: near-empty (training images: none)


def image_measures(images: np.ndarray) -> dict[str, np.ndarray]:
    """{measure: [N] values} for images [N, 28, 28] (or [N, 784]) of grey values 0..255.

    Fashion-MNIST draws a light garment on a black background, so "ink" is the bright part.
    """
    px = np.asarray(images, dtype=np.float64).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    border = np.concatenate([px[:, 0, :], px[:, -1, :], px[:, 1:-1, 0], px[:, 1:-1, -1]], axis=1)
    ink = px > INK_LEVEL
    weight = px.sum(axis=(1, 2))
    coords = np.arange(IMAGE_SIZE, dtype=np.float64)
    safe = np.where(weight > 0, weight, 1.0)
    row = (px.sum(axis=2) * coords).sum(axis=1) / safe
    col = (px.sum(axis=1) * coords).sum(axis=1) / safe
    centre = (IMAGE_SIZE - 1) / 2
    offset = np.where(weight > 0, np.hypot(row - centre, col - centre), 0.0)
    return {
        MEAN_BRIGHTNESS: px.mean(axis=(1, 2)),
        LIGHT_BACKGROUND: (border.mean(axis=1) > LIGHT_BORDER_LEVEL).astype(np.int64),
        NEAR_EMPTY: (ink.mean(axis=(1, 2)) < NEAR_EMPTY_INK_SHARE).astype(np.int64),
        CENTRE_OFFSET: offset,
    }
