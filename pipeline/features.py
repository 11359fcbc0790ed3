"""Names shared by the data, the schema, the transform, the model and serving.

Kept in one small module with no TensorFlow import so every layer (and the CLI) agrees on the
feature layout without paying TensorFlow's start-up cost.
"""
from __future__ import annotations

LABEL_KEY = "label"
IMAGE_SIZE = 28
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
# Kaggle's CSV header: label,pixel1,...,pixel784 (1-based, row-major).
PIXEL_KEYS: tuple[str, ...] = tuple(f"pixel{i}" for i in range(1, NUM_PIXELS + 1))
CSV_COLUMNS: tuple[str, ...] = (LABEL_KEY, *PIXEL_KEYS)

# In the Examples artifact (ExampleGen's output) an image is one int64 feature of 784 values,
# row-major, 0..255: one feature instead of 784 keeps statistics, validation and Transform fast.
RAW_PIXELS_KEY = "pixels"

# Output of Transform: one flat float image in [0, 1]; the model reshapes it to [28, 28, 1].
IMAGE_KEY = "image"
TRANSFORMED_LABEL_KEY = "label"

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
