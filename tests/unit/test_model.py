import numpy as np
import pytest

from components.model import build_model
from components.training_config import ConfigError, TrainingConfig
from schema.contract import NUM_CLASSES


def test_output_is_a_distribution_over_the_classes():
    model = build_model(TrainingConfig())
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    p = model.predict(x, verbose=0)
    assert p.shape == (4, NUM_CLASSES)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_model_fields_size_the_network():
    small = build_model(TrainingConfig(conv_filters=(8,), dense_units=16)).count_params()
    large = build_model(TrainingConfig(conv_filters=(32, 64), convs_per_block=2, dense_units=128)).count_params()
    assert small < large
    hp = TrainingConfig.from_custom_config({"conv_filters": [4, 8], "dropout": 0.1, "epochs": 3})
    assert hp.conv_filters == (4, 8) and hp.dropout == 0.1 and hp.epochs == 3


def test_training_config_round_trips_through_the_trainer_custom_config():
    """What create_pipeline hands the Trainer is read back as the same dataclass; unknown keys fail."""
    import json

    config = TrainingConfig(epochs=3, conv_filters=(4, 8), augment=True, projector_examples=7)
    assert TrainingConfig.from_custom_config(json.loads(json.dumps(config.to_custom_config()))) == config
    with pytest.raises(ConfigError, match="unrelated"):
        TrainingConfig.from_custom_config({"epochs": 3, "unrelated": 1})


def test_learns_a_separable_toy_problem():
    """Bright-top vs bright-bottom images: a working CNN separates them in a few steps."""
    rng = np.random.default_rng(1)
    x = rng.random((256, 28, 28, 1)).astype("float32") * 0.2
    y = rng.integers(0, 2, 256)
    x[y == 0, :14] += 0.8
    x[y == 1, 14:] += 0.8
    model = build_model(TrainingConfig(conv_filters=(8,), dense_units=16, learning_rate=1e-2))
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] > 0.95


def test_augmentation_only_in_training():
    model = build_model(TrainingConfig(augment=True, conv_filters=(8,), dense_units=16))
    x = np.random.default_rng(2).random((2, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))


def test_pool_before_norm_normalises_pooled_activations():
    """The fast preset's ordering: batch norm sees the pooled (14x14) map, not the 28x28 one."""
    late = build_model(TrainingConfig(conv_filters=(8,), dense_units=16))
    early = build_model(TrainingConfig(conv_filters=(8,), dense_units=16, pool_before_norm=True))
    assert late.get_layer("bn0_0").input_shape[1:3] == (28, 28)
    assert early.get_layer("bn0_0").input_shape[1:3] == (14, 14)
    assert early.count_params() == late.count_params()
    assert early.output_shape == late.output_shape
