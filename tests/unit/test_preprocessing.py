"""preprocessing_fn in isolation, and through tf.Transform's own Beam implementation."""
import numpy as np
import tensorflow as tf

from components.preprocessing import preprocessing_fn
from schema.contract import IMAGE_KEY, LABEL_KEY, RAW_PIXELS_KEY


def _inputs(pixels: np.ndarray, labels: np.ndarray) -> dict:
    return {RAW_PIXELS_KEY: tf.constant(pixels, tf.int64),
            LABEL_KEY: tf.constant(labels.reshape(-1, 1), tf.int64)}


def test_pixels_become_one_scaled_image_in_row_major_order():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 784))
    out = preprocessing_fn(_inputs(pixels, np.array([1, 2, 9])))
    image = out[IMAGE_KEY].numpy()
    assert image.shape == (3, 28, 28, 1) and image.dtype == np.float32
    np.testing.assert_allclose(image[:, :, :, 0], pixels.reshape(3, 28, 28) / 255.0, rtol=1e-6)
    # pixel1 is the top-left corner, pixel28 the end of the first row, pixel29 the second row.
    assert image[0, 0, 0, 0] == np.float32(pixels[0, 0] / 255.0)
    assert image[0, 1, 0, 0] == np.float32(pixels[0, 28] / 255.0)
    assert out[LABEL_KEY].numpy().tolist() == [1, 2, 9]


def test_out_of_range_pixels_are_clipped_and_label_optional():
    pixels = np.full((1, 784), 300)
    pixels[0, 5] = -7
    feats = _inputs(pixels, np.array([0]))
    del feats[LABEL_KEY]
    out = preprocessing_fn(feats)
    assert LABEL_KEY not in out
    image = out[IMAGE_KEY].numpy().reshape(-1)
    assert image.max() == 1.0 and image.min() == 0.0


def test_sparse_inputs_are_densified():
    pixels = np.arange(784).reshape(1, 784) % 256
    feats = {RAW_PIXELS_KEY: tf.sparse.from_dense(tf.constant(pixels, tf.int64))}
    image = preprocessing_fn(feats)[IMAGE_KEY].numpy().reshape(-1)
    np.testing.assert_allclose(image, pixels.reshape(-1) / 255.0, rtol=1e-6)
