"""Reproducible training: the same seed on the same machine gives bit-identical weights.

Runs the loop run_fn runs (components/training/training_loop.py: seeding and op determinism, the input read
from gzipped TFRecord shards with its shuffle and validation slice, build and compile, fit with
early stopping) twice on small random data, with augmentation and dropout on so every random
source training has is exercised; a different seed must change the weights, or the test could not
fail."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from components.models.configs import CnnConfig
from components.models.registry import build_and_compile
from components.training.training_config import TrainingConfig
from components.training.training_loop import fit, input_datasets, make_reproducible
from schema.contract import IMAGE_KEY, IMAGE_SIZE, NUM_CLASSES, TRANSFORMED_LABEL_KEY

ROWS = 320


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two gzipped shards of Transform-like examples (float image [28, 28, 1], int64 label)."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("transformed")
    files = []
    for shard in range(2):
        path = str(d / f"part-{shard}.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for _ in range(ROWS // 2):
                image = rng.random(IMAGE_SIZE * IMAGE_SIZE, dtype=np.float32)
                label = int(rng.integers(NUM_CLASSES))
                example = tf.train.Example(features=tf.train.Features(feature={
                    IMAGE_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=image)),
                    TRANSFORMED_LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                }))
                writer.write(example.SerializeToString())
        files.append(path)
    return files


SPEC = {IMAGE_KEY: tf.io.FixedLenFeature([IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32),
        TRANSFORMED_LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}


@pytest.fixture
def determinism():
    """Op determinism is process-wide: switched off again so the other tests run as before."""
    from tensorflow.python.framework import config as tf_config
    yield tf_config
    tf_config.disable_op_determinism()


def train(files, seed: int, precision: str = "float32", **recipe) -> list[np.ndarray]:
    config = TrainingConfig(seed=seed, epochs=2, batch_size=32, augment=True, shuffle_buffer=64, precision=precision,
                            early_stopping_patience=1, **recipe,
                            cnn=CnnConfig(conv_filters=(8, 16), dense_units=32, dropout=0.3, conv_dropout=0.1))
    make_reproducible(config.seed)
    n_val = ROWS // 10
    train_ds, validation = input_datasets(config, files, SPEC, ROWS - n_val, n_val, config.batch_size)
    steps = -(-(ROWS - n_val) // config.batch_size)
    model = build_and_compile(config, steps_per_epoch=steps, epochs=config.epochs)
    fit(model, train_ds, validation, config.epochs, dataclasses.replace(config), verbose=0)
    return model.get_weights()


def test_same_seed_bit_identical_weights_other_seed_different(shards, determinism):
    first, second, other = train(shards, 42), train(shards, 42), train(shards, 7)
    assert determinism.is_op_determinism_enabled()
    assert len(first) == len(second) and first
    for a, b in zip(first, second):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()        # bit-identical, not merely close
    assert any(a.tobytes() != c.tobytes() for a, c in zip(first, other))


def test_same_seed_bit_identical_in_mixed_bfloat16(shards, determinism):
    """The `default` and `fast` presets' `precision=auto` on a CPU with bfloat16 instructions, with
    the rest of `fast`'s recipe: the weights' moving average and label smoothing."""
    recipe = {"ema_momentum": 0.98, "label_smoothing": 0.1}
    first, second = train(shards, 42, "mixed_bfloat16", **recipe), train(shards, 42, "mixed_bfloat16", **recipe)
    assert first and all(a.tobytes() == b.tobytes() for a, b in zip(first, second))
