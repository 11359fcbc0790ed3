import dataclasses

import pytest

from pipeline.config import ConfigError, PipelineConfig, load_config


def test_presets_layer_and_overrides_win():
    sample = load_config("sample")
    assert sample.pipeline_name == "fmnist-sample" and sample.training.epochs == 8
    cfg = load_config("sample", overrides={"epochs": "3", "augment": "true", "cnn.conv_filters": "16,32,64"})
    assert (cfg.training.epochs, cfg.training.augment, cfg.training.cnn.conv_filters) == (3, True, (16, 32, 64))
    default = load_config("default").training
    assert (default.cnn.convs_per_block, default.cnn.dropout, default.label_smoothing) == (2, 0.35, 0.1)
    assert load_config("default").pipeline_name == "fmnist"


def test_yaml_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 2\nlearning_rate: 0.01\ncnn:\n  conv_filters: [8, 16]\nresnet.width: 8\n")
    cfg = load_config("default", str(f), {"epochs": 5})
    assert (cfg.training.epochs, cfg.training.learning_rate, cfg.training.cnn.conv_filters) == (5, 0.01, (8, 16))
    assert cfg.training.cnn.convs_per_block == 2   # the preset's, kept beside the file's group field
    assert cfg.training.resnet.width == 8


@pytest.mark.parametrize("overrides, field", [
    ({"epochs": "0"}, "epochs"),
    ({"epochs": "many"}, "epochs"),
    ({"validation_fraction": "1.5"}, "validation_fraction"),
    ({"accuracy_threshold": "2"}, "accuracy_threshold"),
    ({"model_name": "../evil"}, "model_name"),
    ({"augment": "maybe"}, "augment"),
    ({"cnn.dropout": "1.5"}, "cnn.dropout"),
    ({"resnet.width": "wide"}, "resnet.width"),
    ({"model": "vgg"}, "registered: cnn, resnet"),
])
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        load_config("default", overrides=overrides)


def test_unknown_key_and_preset():
    with pytest.raises(ConfigError, match="epochz"):
        load_config("default", overrides={"epochz": 1})
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("nope")
    with pytest.raises(ConfigError, match=r"'dense_units' is now 'cnn.dense_units'"):
        load_config("default", overrides={"dense_units": "64"})
    with pytest.raises(ConfigError, match="cnn.widht"):
        load_config("default", overrides={"cnn.widht": "1"})


def test_derived_paths_follow_tf_serving_layout():
    cfg = PipelineConfig(output_root="/o", model_name="m")
    assert cfg.serving_model_dir == "/o/serving/m"
    assert PipelineConfig(serving_root="/srv", model_name="m").serving_model_dir == "/srv/m"
    assert cfg.metadata_path.startswith("/o/metadata/") and cfg.pipeline_root.startswith("/o/pipelines/")
    tc = cfg.training.to_custom_config()
    assert tc["cnn"]["conv_filters"] == [32, 64] and tc["epochs"] == cfg.training.epochs and tc["model"] == "cnn"


def test_training_fields_are_set_by_name_and_have_one_default():
    """A training field reaches the Trainer's dataclass from a preset, an override or replace();
    its default is the TrainingConfig's (no second copy in PipelineConfig)."""
    from components.training.training_config import TrainingConfig

    assert PipelineConfig().training == TrainingConfig()
    cfg = load_config("default", overrides={"projector_examples": "50"})
    assert cfg.training.projector_examples == 50
    assert cfg.replace(epochs=2, accuracy_threshold=0.5).training.epochs == 2
    assert cfg.replace(cnn={"dense_units": 8}).training.cnn == dataclasses.replace(cfg.training.cnn, dense_units=8)
    assert cfg.replace(**{"resnet.width": 8}).training.resnet.width == 8
    with pytest.raises(ConfigError, match="epochs"):
        cfg.replace(epochs=0)
