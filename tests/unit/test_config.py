import pytest

from pipeline.config import ConfigError, PipelineConfig, load_config


def test_presets_layer_and_overrides_win():
    sample = load_config("sample")
    assert sample.pipeline_name == "fmnist-sample" and sample.training.epochs == 8
    cfg = load_config("sample", overrides={"epochs": "3", "augment": "true", "conv_filters": "16,32,64"})
    assert (cfg.training.epochs, cfg.training.augment, cfg.training.conv_filters) == (3, True, (16, 32, 64))
    assert load_config("default").pipeline_name == "fmnist"


def test_yaml_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 2\nlearning_rate: 0.01\nconv_filters: [8, 16]\n")
    cfg = load_config("default", str(f), {"epochs": 5})
    assert (cfg.training.epochs, cfg.training.learning_rate, cfg.training.conv_filters) == (5, 0.01, (8, 16))


@pytest.mark.parametrize("overrides, field", [
    ({"epochs": "0"}, "epochs"),
    ({"epochs": "many"}, "epochs"),
    ({"validation_fraction": "1.5"}, "validation_fraction"),
    ({"accuracy_threshold": "2"}, "accuracy_threshold"),
    ({"model_name": "../evil"}, "model_name"),
    ({"augment": "maybe"}, "augment"),
])
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        load_config("default", overrides=overrides)


def test_unknown_key_and_preset():
    with pytest.raises(ConfigError, match="epochz"):
        load_config("default", overrides={"epochz": 1})
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("nope")


def test_derived_paths_follow_tf_serving_layout():
    cfg = PipelineConfig(output_root="/o", model_name="m")
    assert cfg.serving_model_dir == "/o/serving/m"
    assert PipelineConfig(serving_root="/srv", model_name="m").serving_model_dir == "/srv/m"
    assert cfg.metadata_path.startswith("/o/metadata/") and cfg.pipeline_root.startswith("/o/pipelines/")
    tc = cfg.training.to_custom_config()
    assert tc["conv_filters"] == [32, 64] and tc["epochs"] == cfg.training.epochs


def test_training_fields_are_set_by_name_and_have_one_default():
    """A training field reaches the Trainer's dataclass from a preset, an override or replace();
    its default is the TrainingConfig's (no second copy in PipelineConfig)."""
    from components.training_config import TrainingConfig

    assert PipelineConfig().training == TrainingConfig()
    cfg = load_config("default", overrides={"projector_examples": "50"})
    assert cfg.training.projector_examples == 50
    assert cfg.replace(epochs=2, accuracy_threshold=0.5).training.epochs == 2
    with pytest.raises(ConfigError, match="epochs"):
        cfg.replace(epochs=0)
