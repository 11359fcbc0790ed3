"""The model seam (components/models/): architectures by name, each built, contract-checked and
trainable; the CNN's sizing behaviour; compilation shared by all of them."""
import argparse
import dataclasses

import numpy as np
import pytest

from components.models.compile import compile_model
from components.models.configs import CnnConfig
from components.models.registry import BUILDERS, ModelContractError, build_and_compile, build_model
from components.models.resnet import build_resnet
from components.training.training_config import ConfigError, TrainingConfig, group_names
from schema.contract import EMBEDDING_LAYER, NUM_CLASSES, PROBABILITIES_OUTPUT, TRAINING_ACCURACY_METRIC

# Pinned: a change here changes what is trained and served (and ends warm starts from the served
# model), so it must be deliberate. The CNN's is the count from before the model seam.
PARAMETERS = {"cnn": 422_314, "resnet": 175_706}


def small_cnn(**fields) -> TrainingConfig:
    return TrainingConfig(cnn=CnnConfig(**{"conv_filters": (8,), "dense_units": 16, **fields}))


def test_every_config_group_is_a_registered_architecture_with_a_pinned_size():
    """A config group of TrainingConfig registers an architecture: its builder is found, and a new
    one must pin its parameter count here."""
    assert sorted(BUILDERS) == sorted(group_names()) == sorted(PARAMETERS)
    assert BUILDERS["cnn"].__name__ == "build_cnn" and BUILDERS["resnet"] is build_resnet


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_each_architecture_builds_trains_one_step_and_keeps_its_size(name):
    config = TrainingConfig(model=name)
    model = build_model(config)
    assert model.name == f"fmnist_{name}" and model.optimizer is None   # built, not compiled
    assert model.count_params() == PARAMETERS[name]
    assert model.get_layer(EMBEDDING_LAYER) and model.output_names == [PROBABILITIES_OUTPUT]
    compile_model(model, config, steps_per_epoch=1, epochs=1)
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 28, 28, 1), dtype=np.float32), np.arange(8) % NUM_CLASSES
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and TRAINING_ACCURACY_METRIC in logs
    assert any(not np.array_equal(b, a) for b, a in zip(before, model.get_weights()))
    p = model.predict(x, verbose=0)
    assert p.shape == (8, NUM_CLASSES)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_a_builder_without_the_embedding_layer_is_refused_naming_it(monkeypatch):
    import tf_keras as keras

    def no_embedding(x, config):
        x = keras.layers.Flatten()(x)
        return keras.layers.Dense(NUM_CLASSES, activation="softmax", name=PROBABILITIES_OUTPUT)(x)

    monkeypatch.setitem(BUILDERS, "resnet", no_embedding)
    with pytest.raises(ModelContractError, match=r"architecture 'resnet' \(.*no_embedding\).*no layer named "
                                                 f"'{EMBEDDING_LAYER}'"):
        build_model(TrainingConfig(model="resnet"))


def test_a_builder_with_another_output_name_is_refused(monkeypatch):
    import tf_keras as keras

    def wrong_output(x, config):
        x = keras.layers.Flatten(name=EMBEDDING_LAYER)(x)
        return keras.layers.Dense(NUM_CLASSES, activation="softmax", name="logits")(x)

    monkeypatch.setitem(BUILDERS, "cnn", wrong_output)
    with pytest.raises(ModelContractError, match=f"architecture 'cnn'.*'{PROBABILITIES_OUTPUT}'.*logits"):
        build_model(TrainingConfig())


def test_set_model_and_its_group_on_the_command_line_reach_the_builder(monkeypatch):
    from pipeline.config_args import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, "sample")
    args = parser.parse_args(["--set", "model=resnet", "--set", "resnet.width=8", "--set", "resnet.stages=2"])
    training = config_from_args(args).training
    seen = []
    monkeypatch.setitem(BUILDERS, "resnet", lambda x, group: seen.append(group) or build_resnet(x, group))
    model = build_model(training)
    assert seen == [dataclasses.replace(training.resnet, width=8, stages=2)]
    assert model.get_layer("stem").filters == 8 and model.get_layer(EMBEDDING_LAYER).output_shape == (None, 16)


def test_unknown_architecture_lists_the_registered_ones():
    from pipeline.config import load_config

    registered = "registered: " + ", ".join(sorted(BUILDERS))
    assert registered.startswith("registered: cnn, resnet")
    with pytest.raises(ConfigError, match=f"'vgg' is not a registered architecture; {registered}$"):
        load_config("sample", overrides={"model": "vgg"})
    with pytest.raises(ConfigError, match=f"'vgg' is not a registered architecture; {registered}$"):
        build_model(TrainingConfig(model="vgg"))


def test_cnn_fields_size_the_network():
    small = build_model(small_cnn()).count_params()
    large = build_model(TrainingConfig(cnn=CnnConfig(conv_filters=(32, 64), convs_per_block=2))).count_params()
    assert small < large
    hp = TrainingConfig.from_custom_config({"cnn": {"conv_filters": [4, 8], "dropout": 0.1}, "epochs": 3})
    assert hp.cnn.conv_filters == (4, 8) and hp.cnn.dropout == 0.1 and hp.epochs == 3


def test_training_config_round_trips_through_the_trainer_custom_config():
    """What create_pipeline hands the Trainer is read back as the same dataclass; unknown keys fail,
    inside a group too."""
    import json

    config = dataclasses.replace(small_cnn(conv_filters=(4, 8)), epochs=3, augment=True, projector_examples=7,
                                 model="resnet")
    assert TrainingConfig.from_custom_config(json.loads(json.dumps(config.to_custom_config()))) == config
    with pytest.raises(ConfigError, match="unrelated"):
        TrainingConfig.from_custom_config({"epochs": 3, "unrelated": 1})
    with pytest.raises(ConfigError, match="'resnet' has unknown field.*widht"):
        TrainingConfig.from_custom_config({"resnet": {"widht": 3}})


def test_learns_a_separable_toy_problem():
    """Bright-top vs bright-bottom images: a working CNN separates them in a few steps."""
    rng = np.random.default_rng(1)
    x = rng.random((256, 28, 28, 1)).astype("float32") * 0.2
    y = rng.integers(0, 2, 256)
    x[y == 0, :14] += 0.8
    x[y == 1, 14:] += 0.8
    model = build_and_compile(dataclasses.replace(small_cnn(), learning_rate=1e-2))
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] > 0.95


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_augmentation_only_in_training_for_every_architecture(name):
    config = dataclasses.replace(small_cnn(), model=name, augment=True,
                                 resnet=dataclasses.replace(TrainingConfig().resnet, width=4, stages=1))
    model = build_model(config)
    assert model.get_layer("shift") and model.get_layer("flip")
    x = np.random.default_rng(2).random((2, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))


def test_pool_before_norm_normalises_pooled_activations():
    """The fast preset's ordering: batch norm sees the pooled (14x14) map, not the 28x28 one."""
    late = build_model(small_cnn())
    early = build_model(small_cnn(pool_before_norm=True))
    assert late.get_layer("bn0_0").input_shape[1:3] == (28, 28)
    assert early.get_layer("bn0_0").input_shape[1:3] == (14, 14)
    assert early.count_params() == late.count_params()
    assert early.output_shape == late.output_shape


def test_gpu_preset_builds_compiles_and_trains_a_few_steps_on_the_cpu():
    """The `gpu` preset's model settings exactly (only epochs and the data are small here): its
    accuracy is a GPU run's claim; here it must build, compile and train."""
    from pipeline.config import load_config

    preset = load_config("gpu").training
    assert preset.model == "resnet" and preset.augment and preset.label_smoothing > 0
    config = dataclasses.replace(preset, epochs=1)
    model = build_and_compile(config, steps_per_epoch=2, epochs=1)
    assert model.count_params() == 4_331_338          # WRN-20-4: width 64, 3 blocks per stage
    assert model.get_layer("stem").filters == 64 and model.get_layer("shift") and model.get_layer("flip")
    rng = np.random.default_rng(3)
    x, y = rng.random((8, 28, 28, 1), dtype=np.float32), np.arange(8) % NUM_CLASSES
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)   # 2 steps
    assert np.isfinite(history.history["loss"][0]) and TRAINING_ACCURACY_METRIC in history.history
    assert any(not np.array_equal(b, a) for b, a in zip(before, model.get_weights()))
    assert model.predict(x, verbose=0).shape == (8, NUM_CLASSES)


def test_mixed_bfloat16_trains_in_bfloat16_and_exports_an_exact_float32_copy():
    """`precision=mixed_bfloat16`: the convolutions compute in bfloat16 (weights stay float32), the
    probabilities in float32; what is exported (float32_copy) computes in float32 with the very
    same weights, so it agrees with the trained model to bfloat16's precision, not bit for bit."""
    import tensorflow as tf
    import tf_keras as keras

    from components.models.registry import float32_copy

    config = dataclasses.replace(small_cnn(), precision="mixed_bfloat16")
    model = build_and_compile(config, steps_per_epoch=1, epochs=1)
    assert keras.mixed_precision.global_policy().name == "float32"   # set for the build only
    assert model.get_layer("conv0_0").compute_dtype == "bfloat16"
    assert model.get_layer("conv0_0").variable_dtype == "float32"
    assert model.outputs[0].dtype == tf.float32
    rng = np.random.default_rng(4)
    x, y = rng.random((16, 28, 28, 1), dtype=np.float32), np.arange(16) % NUM_CLASSES
    model.train_on_batch(x, y)
    served = float32_copy(model, config)
    assert served is not model and all(layer.compute_dtype == "float32" for layer in served.layers)
    for a, b in zip(model.get_weights(), served.get_weights()):
        np.testing.assert_array_equal(a, b)
    p_mixed, p_served = model.predict(x, verbose=0), served.predict(x, verbose=0)
    np.testing.assert_allclose(p_served, p_mixed, atol=0.03)
    assert not np.array_equal(p_served, p_mixed)      # really computed in another precision
    assert float32_copy(served, small_cnn()) is served  # float32 training: the model itself


def test_a_builder_whose_probabilities_are_not_float32_under_mixed_precision_is_refused(monkeypatch):
    import tf_keras as keras

    def bf16_output(x, config):
        x = keras.layers.Flatten(name=EMBEDDING_LAYER)(x)
        return keras.layers.Dense(NUM_CLASSES, activation="softmax", name=PROBABILITIES_OUTPUT)(x)

    monkeypatch.setitem(BUILDERS, "cnn", bf16_output)
    with pytest.raises(ModelContractError, match=r"computes 'probabilities' in bfloat16.*dtype='float32'"):
        build_model(TrainingConfig(precision="mixed_bfloat16"))
    assert build_model(TrainingConfig()).outputs[0].dtype.name == "float32"


def test_an_unknown_precision_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match="'precision' = 'bf16' must be one of auto, float32, mixed_bfloat16"):
        TrainingConfig(precision="bf16").validate()


@pytest.mark.parametrize("flags, expected", [("fpu avx2 avx512f avx512_bf16 fma", "mixed_bfloat16"),
                                             ("fpu amx_bf16 amx_tile", "mixed_bfloat16"),
                                             ("fpu avx2 avx512f fma", "float32")])
def test_auto_precision_is_bfloat16_only_where_the_cpu_computes_it_natively(tmp_path, flags, expected):
    """Where bfloat16 is emulated it is slower than float32, so "auto" picks it only with the flags."""
    from components.models.registry import resolved_precision

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert resolved_precision(TrainingConfig(precision="auto"), str(cpuinfo)) == expected
    assert resolved_precision(TrainingConfig(precision="auto"), str(tmp_path / "absent")) == "float32"
    assert resolved_precision(TrainingConfig(precision="mixed_float16"), str(cpuinfo)) == "mixed_float16"


def test_training_only_settings_leave_the_served_graph_unchanged():
    """Augmentation is identity at inference and a mixed-precision model is exported as its float32
    copy: the graph a server runs for the `default` preset is op for op the plain float32 CNN's,
    so its serving latency is the plain model's."""
    import tensorflow as tf

    from components.models.registry import float32_copy
    from pipeline.config import load_config

    def served_ops(config: TrainingConfig) -> list[str]:
        model = float32_copy(build_model(config), config)
        fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec([None, 28, 28, 1], tf.float32))
        return sorted(op.type for op in fn.graph.get_operations())

    preset = dataclasses.replace(load_config("default").training, augment=True, precision="mixed_bfloat16")
    plain = dataclasses.replace(preset, augment=False, precision="float32")
    assert served_ops(preset) == served_ops(plain)
    assert "Conv2D" in served_ops(plain) and not any("Cast" in op for op in served_ops(preset))


def test_weight_averaging_is_written_into_the_model_at_every_epoch_end():
    """With ema_momentum, what validation, early stopping and the export see at an epoch's end is
    the optimizer's moving average of the weights: writing the average in again changes nothing."""
    import tensorflow as tf
    import tf_keras as keras

    rng = np.random.default_rng(3)
    x, y = rng.random((128, 28, 28, 1)).astype("float32"), rng.integers(0, NUM_CLASSES, 128)
    model = build_and_compile(dataclasses.replace(small_cnn(), ema_momentum=0.9), steps_per_epoch=4, epochs=2)
    assert model.optimizer.use_ema and model.optimizer.ema_overwrite_frequency == 4
    gaps: list[float] = []

    class AverageAtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            before = [w.numpy() for w in self.model.trainable_variables]
            self.model.optimizer.finalize_variable_values(self.model.trainable_variables)
            gaps.append(max(float(np.abs(b - w.numpy()).max())
                            for b, w in zip(before, self.model.trainable_variables)))

    start = [w.numpy() for w in model.trainable_variables]
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=2, callbacks=[AverageAtEpochEnd()],
              verbose=0)
    assert gaps == [0.0, 0.0]
    assert any(not np.array_equal(s, w.numpy()) for s, w in zip(start, model.trainable_variables))


def test_no_weight_averaging_without_a_known_epoch_length_or_momentum():
    averaged = dataclasses.replace(small_cnn(), ema_momentum=0.99)
    assert not build_and_compile(averaged).optimizer.use_ema
    assert not build_and_compile(small_cnn(), steps_per_epoch=4, epochs=2).optimizer.use_ema
    with pytest.raises(ConfigError, match="ema_momentum"):
        dataclasses.replace(small_cnn(), ema_momentum=1.0).validate()
