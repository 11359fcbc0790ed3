"""Warm start from a served SavedModel: weights restored when the architecture matches, a cold
start naming the difference otherwise (components/training/warm_start.py)."""
import numpy as np
import tensorflow as tf

from components.models.configs import CnnConfig
from components.models.registry import build_and_compile, build_model
from components.training import warm_start
from components.training.training_config import TrainingConfig


def cnn(**fields) -> TrainingConfig:
    return TrainingConfig(cnn=CnnConfig(**fields))


def _served(tmp_path, hp: TrainingConfig) -> tuple[object, str]:
    model = build_and_compile(hp, steps_per_epoch=5, epochs=2)
    x = np.random.default_rng(0).random((32, 28, 28, 1), dtype=np.float32)
    model.fit(x, np.arange(32) % 10, epochs=1, verbose=0)   # optimizer state and metrics exist too
    path = str(tmp_path / "served" / "1")
    tf.saved_model.save(model, path)
    return model, path


def test_matching_architecture_restores_every_layer_weight_and_not_the_optimizer(tmp_path):
    served, path = _served(tmp_path, cnn(conv_filters=(8, 16), dense_units=16))
    fresh = build_and_compile(cnn(conv_filters=(8, 16), dense_units=16), steps_per_epoch=3, epochs=1)
    result = warm_start.check(fresh, path)
    assert result.warm and result.variables == len(served.weights)
    before = [w.numpy().copy() for w in fresh.weights]
    warm_start.restore(fresh, path)
    for got, want, old in zip(fresh.weights, served.weights, before):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert any(not np.array_equal(o, w.numpy()) for o, w in zip(before, served.weights))
    assert int(fresh.optimizer.iterations.numpy()) == 0
    x = np.random.default_rng(1).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(fresh.predict(x, verbose=0), served.predict(x, verbose=0), atol=1e-6)


def test_other_architecture_or_nothing_served_is_a_cold_start_saying_why(tmp_path):
    _, path = _served(tmp_path, cnn(conv_filters=(8, 16), dense_units=16))
    wider = warm_start.check(build_model(cnn(conv_filters=(8, 16), dense_units=32)), path)
    assert not wider.warm and "architecture differs" in wider.reason
    assert "(784, 16) served vs (784, 32) now" in wider.reason
    deeper = warm_start.check(build_model(cnn(conv_filters=(8, 16, 16), dense_units=16)), path)
    assert not deeper.warm and "architecture differs" in deeper.reason
    nothing = warm_start.check(build_model(cnn(conv_filters=(8, 16))), str(tmp_path / "none"))
    assert not nothing.warm and "first run" in nothing.reason
