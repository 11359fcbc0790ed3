"""Turns an ordinary photo into the input a Fashion-MNIST model expects.

Fashion-MNIST images are 28x28 grey, a light garment on a black background, centred and filling
the frame. Product photos are the opposite (dark or colourful garment on white), any size, any
aspect ratio. So: flatten transparency onto white, convert to grey, invert when the background
(the border) is light, crop to the garment, pad to a square, shrink to 28x28, stretch contrast.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 28
MARGIN = 0.04          # Fashion-MNIST leaves a pixel or so around the garment
BACKGROUND_CUT = 0.15  # pixels below 15% of the brightest count as background when cropping


def to_grey(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return np.asarray(image.convert("L"), dtype=np.float32)


def light_background(grey: np.ndarray) -> bool:
    """The border's median brightness tells the background; > mid-grey means dark-on-light."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return float(np.median(border)) > 127


def crop_to_content(grey: np.ndarray) -> np.ndarray:
    peak = float(grey.max())
    if peak <= 0:
        return grey
    rows = np.nonzero((grey > peak * BACKGROUND_CUT).any(axis=1))[0]
    cols = np.nonzero((grey > peak * BACKGROUND_CUT).any(axis=0))[0]
    return grey[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def pad_square(grey: np.ndarray, margin: float = MARGIN) -> np.ndarray:
    h, w = grey.shape
    side = int(round(max(h, w) * (1 + 2 * margin)))
    out = np.zeros((side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = grey
    return out


def fashion_mnist_input(image: Image.Image) -> np.ndarray:
    """[28, 28] float32 in 0..255, light garment on black, centred."""
    grey = to_grey(image)
    if light_background(grey):
        grey = 255.0 - grey
    grey = pad_square(crop_to_content(grey))
    small = np.asarray(Image.fromarray(grey).resize((SIZE, SIZE), Image.LANCZOS), dtype=np.float32)
    small = np.clip(small, 0, None)
    peak = small.max()
    return (small * (255.0 / peak) if peak > 0 else small).astype(np.float32)


def load_image(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return fashion_mnist_input(image)
