"""Image-level measures the production monitor compares between training and served images.

Why these: a photo pipeline goes wrong in ways a pixel histogram hides or blurs -- a phone photo of
a garment on a white table (light background), an exposure change (mean brightness), a crop that
misses the garment (near-empty image), a garment off the centre (centre offset). Each becomes one
feature per image so TFDV can compute its statistics and compare them with the training images'
under the thresholds kept in schema/schema.pbtxt.

NumPy only (no TensorFlow), so the schema generator and the CLI can import the names cheaply.
"""
from __future__ import annotations

import numpy as np

from pipeline.features import IMAGE_SIZE

MEAN_BRIGHTNESS = "mean_brightness"      # FLOAT: mean grey value of the image, 0..255
LIGHT_BACKGROUND = "light_background"    # INT 0/1: the border is mostly light (a photo on a light table)
NEAR_EMPTY = "near_empty"                # INT 0/1: almost no ink (a crop that missed the garment)
CENTRE_OFFSET = "centre_offset"          # FLOAT: distance of the ink's centre of mass from the image centre, px
PREDICTED_LABEL = "predicted_label"      # INT 0..9: the class the served model answered

MEASURES: tuple[str, ...] = (MEAN_BRIGHTNESS, LIGHT_BACKGROUND, NEAR_EMPTY, CENTRE_OFFSET)

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
