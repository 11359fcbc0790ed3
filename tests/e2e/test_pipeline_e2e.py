"""The real TFX pipeline under LocalDagRunner on the committed sample, and what it leaves behind."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import read_sample_rows
from schema import contract
from schema.contract import ACCURACY_METRIC, CLASS_NAMES, PIXEL_KEYS


def test_every_component_ran_and_produced_its_artifacts(sample_run):
    config, summary = sample_run
    assert not summary.failures, summary.failures
    assert sorted(c.name for c in summary.components) == sorted(contract.COMPONENT_IDS)
    for name in contract.COMPONENT_IDS:
        component = summary.component(name)
        assert component is not None and component.state == "COMPLETE", (name, component)
    outputs = {
        contract.EXAMPLE_GEN: "examples", contract.STATISTICS_GEN: "statistics", contract.SCHEMA_GEN: "schema",
        contract.EXAMPLE_VALIDATOR: "anomalies", contract.TRANSFORM: "transform_graph", contract.TRAINER: "model",
        contract.EVALUATOR: "evaluation", contract.PUSHER: "pushed_model",
    }
    for name, key in outputs.items():
        artifacts = summary.component(name).outputs[key]
        assert artifacts and os.listdir(artifacts[0].uri), (name, key)


def test_examples_carry_the_payload_format_like_the_stock_example_gen(sample_run):
    """Readers (StatisticsGen, Transform, Evaluator) take the payload format from the artifact."""
    from tfx.proto import example_gen_pb2

    _, summary = sample_run
    [examples] = summary.component(contract.EXAMPLE_GEN).outputs["examples"]
    assert examples.custom_properties["payload_format"].string_value == \
        example_gen_pb2.PayloadFormat.Name(example_gen_pb2.FORMAT_TF_EXAMPLE)


def test_statistics_and_anomalies_open_with_tfdv(sample_run):
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.utils.anomalies_util import load_anomalies_binary

    _, summary = sample_run
    stats_uri = summary.component("StatisticsGen").outputs["statistics"][0].uri
    stats = tfdv.load_stats_binary(os.path.join(stats_uri, "Split-train", "FeatureStats.pb"))
    dataset = stats.datasets[0]
    assert dataset.num_examples == 2500
    assert {f.path.step[0] for f in dataset.features} == {"label", "pixels"}
    pixels = next(f for f in dataset.features if f.path.step[0] == "pixels")
    assert pixels.num_stats.max == 255 and pixels.num_stats.common_stats.max_num_values == 784
    anomalies_uri = summary.component("ExampleValidator").outputs["anomalies"][0].uri
    assert not load_anomalies_binary(os.path.join(anomalies_uri, "Split-test", "SchemaDiff.pb")).anomaly_info


def test_blessed_pushed_with_per_class_metrics(sample_run):
    config, summary = sample_run
    assert summary.blessed is True
    overall = summary.metrics["overall"][ACCURACY_METRIC]
    assert overall >= config.accuracy_threshold
    assert summary.metrics["overall"]["example_count"] == 600
    assert {f"label={i}" for i in range(10)} <= set(summary.metrics)
    assert os.path.dirname(summary.pushed_to) == config.serving_model_dir
    assert os.path.basename(summary.pushed_to).isdigit()
    # Nothing but complete integer versions in the serving directory.
    assert os.listdir(config.serving_model_dir) == [os.path.basename(summary.pushed_to)]


@pytest.fixture(scope="module")
def pushed(sample_run):
    return tf.saved_model.load(sample_run[1].pushed_to)


def _serialized(rows):
    out = []
    for row in rows:
        feats = {k: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
                 for k, v in zip(PIXEL_KEYS, row[1:])}
        out.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return tf.constant(out)


def test_pushed_model_classifies_through_every_signature(pushed):
    _, rows = read_sample_rows()
    labels = np.array([r[0] for r in rows])
    images = np.array([r[1:] for r in rows], dtype=np.float32).reshape(-1, 28, 28)
    by_examples = pushed.signatures["serving_default"](examples=_serialized(rows))
    by_float = pushed.signatures["serving_images"](images=tf.constant(images))
    by_uint8 = pushed.signatures["serving_images_uint8"](images=tf.constant(images.astype(np.uint8)))
    pixels_examples = tf.constant([tf.train.Example(features=tf.train.Features(feature={
        "pixels": tf.train.Feature(int64_list=tf.train.Int64List(value=r[1:]))})).SerializeToString()
        for r in rows])
    by_pixels = pushed.signatures["serving_pixels_examples"](examples=pixels_examples)
    for out in (by_examples, by_float, by_uint8, by_pixels):
        assert out["probabilities"].shape == (len(rows), 10)
        accuracy = float(np.mean(out["class_id"].numpy() == labels))
        assert accuracy > 0.7, accuracy  # chance is 0.1
        names = [n.decode() for n in out["class_name"].numpy()]
        assert names == [CLASS_NAMES[i] for i in out["class_id"].numpy()]
    np.testing.assert_allclose(by_examples["probabilities"], by_float["probabilities"], atol=1e-5)
    np.testing.assert_allclose(by_float["probabilities"], by_uint8["probabilities"], atol=1e-5)
    np.testing.assert_allclose(by_pixels["probabilities"], by_float["probabilities"], atol=1e-5)


def test_trainer_wrote_tensorboard_logs_and_history(sample_run):
    _, summary = sample_run
    run_dir = summary.component("Trainer").outputs["model_run"][0].uri
    files = [os.path.join(d, f) for d, _, fs in os.walk(run_dir) for f in fs]
    assert any("tfevents" in f for f in files)
    assert os.path.exists(os.path.join(run_dir, "history.json"))


def test_second_run_is_served_from_the_cache(sample_run, tmp_path):
    """Run again on a copy of the first run's outputs (ML Metadata, pipeline root, serving
    directory): the session's sample_run stays as the first run left it for every other test,
    whichever order they run in."""
    from pipeline import runner

    first, _ = sample_run
    shutil.copytree(first.output_root, tmp_path / "outputs")
    config = first.replace(output_root=str(tmp_path / "outputs"))
    served = sorted(os.listdir(config.serving_model_dir))
    again = runner.run_local(config, progress=False)
    for name in (contract.EXAMPLE_GEN, contract.STATISTICS_GEN, contract.TRANSFORM, contract.TRAINER):
        assert again.component(name).state == "CACHED", name
    text = runner.format_summary(again, config)
    assert "(cached)" in text
    # The same model against itself: no row where only one is right, "no evidence"; with the
    # default policy `keep` it is not pushed again (components/decision.py).
    assert again.blessed is False and not again.pushed_to, text
    assert "decision: no evidence (+0.00 points" in text and "0 vs 0 rows" in text, text
    assert runner.exit_code(again) == runner.EXIT_NOT_PUSHED
    assert sorted(os.listdir(config.serving_model_dir)) == served


def test_run_report_matches_the_evaluator(sample_run):
    import json

    from PIL import Image

    config, summary = sample_run
    assert summary.report_path and summary.report_path.endswith("index.html")
    folder = os.path.dirname(summary.report_path)
    for png in ("history.png", "confusion.png", "misclassified.png"):
        with Image.open(os.path.join(folder, png)) as img:
            img.load()
            assert img.size[0] > 200 and img.size[1] > 100
    data = json.load(open(os.path.join(folder, "per_class.json")))
    for row in data["per_class"]:
        sliced = summary.metrics[f"label={row['class_id']}"][ACCURACY_METRIC]
        assert abs(row["recall"] - sliced) < 1e-6, row  # recall == accuracy on the label slice
        assert row["support"] == 60
    blessing = data["blessing"]
    assert blessing["blessed"] is True and blessing["threshold"] == config.accuracy_threshold
    assert abs(blessing["accuracy"] - summary.metrics["overall"][ACCURACY_METRIC]) < 1e-9
    page = open(summary.report_path).read()
    assert "BLESSED" in page and f"{blessing['accuracy']:.4f}" in page


def test_projector_of_test_embeddings_in_trainer_logs(sample_run):
    _, summary = sample_run
    out = os.path.join(summary.component("Trainer").outputs["model_run"][0].uri, "projector")
    config = open(os.path.join(out, "projector_config.pbtxt")).read()
    assert "sprite.png" in config and "metadata.tsv" in config
    lines = open(os.path.join(out, "metadata.tsv")).read().splitlines()
    assert lines[0] == "label\tclass" and len(lines) == 601  # all 600 sample test rows
    assert any(f.startswith("embedding.ckpt") for f in os.listdir(out))
