"""`fmnist monitor` on the sample run's real model and ML Metadata: the session's pipeline run
pushes a model, a real server on 127.0.0.1 serves it with request logging, the sample's test rows
are sent as they are or changed the ways photos go wrong, and the monitor compares the logs with
the training statistics it finds through MLMD, under the thresholds in schema/schema.pbtxt."""
import json
import os

import numpy as np
import pytest

import served_traffic
from pipeline import cli
from pipeline.monitoring.image_measures import CENTRE_OFFSET, LIGHT_BACKGROUND, MEAN_BRIGHTNESS, NEAR_EMPTY
from schema.make_schema import SERVING_THRESHOLDS


@pytest.fixture(scope="module")
def served(sample_run):
    config, _ = sample_run
    return config.serving_model_dir, config.metadata_path


def _monitor(tmp_path, logs, metadata) -> tuple[int, str, dict]:
    out = tmp_path / "monitor"
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main(["monitor", "--logs", str(logs), "--metadata", metadata, "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    return code, buf.getvalue(), summary


def test_served_test_rows_raise_no_alarm(served, tmp_path):
    """All 600 test rows served as images: exit 0, every measure under its threshold; the outputs
    are the Examples layout (one row per served image, with the answered class), TFDV statistics,
    an ExampleAnomalies-layout file TFDV reads, and an HTML report with plots."""
    import tensorflow as tf
    from tensorflow_data_validation.utils.anomalies_util import load_anomalies_binary

    serving_dir, metadata = served
    _, images = served_traffic.test_images()
    served_traffic.serve_and_log(serving_dir, tmp_path / "logs" / "fmnist", [images])
    code, out, summary = _monitor(tmp_path, tmp_path / "logs", metadata)
    assert code == 0, out
    assert summary["rows"] == 600 and not summary["alarm"]
    assert {m["feature"] for m in summary["measurements"]} == set(SERVING_THRESHOLDS)
    for m in summary["measurements"]:
        assert m["threshold"] == SERVING_THRESHOLDS[m["feature"]][1] and m["value"] <= m["threshold"]
    monitor_dir = tmp_path / "monitor"
    anomalies = load_anomalies_binary(str(monitor_dir / "anomalies" / "Split-serving" / "SchemaDiff.pb"))
    assert not anomalies.anomaly_info and len(anomalies.drift_skew_info) == len(SERVING_THRESHOLDS)
    records = list(tf.data.TFRecordDataset(
        str(monitor_dir / "examples" / "Split-serving" / "data_tfrecord-00000-of-00001.gz"), compression_type="GZIP"))
    first = tf.train.Example.FromString(records[0].numpy()).features.feature
    assert len(records) == 600 and len(first["pixels"].int64_list.value) == 784
    assert list(first["pixels"].int64_list.value) == images[0].reshape(-1).tolist()
    assert 0 <= first["predicted_label"].int64_list.value[0] <= 9
    report = (monitor_dir / "report.html").read_text()
    assert "OK: served traffic within every threshold" in report and report.count("data:image/png") >= 5
    assert os.path.exists(monitor_dir / "statistics" / "Split-serving" / "FeatureStats.pb")


@pytest.mark.parametrize("change, measures", [
    ("inverted", [LIGHT_BACKGROUND, "pixels", MEAN_BRIGHTNESS]),
    ("shifted", [CENTRE_OFFSET]),
    ("brighter", [MEAN_BRIGHTNESS, "pixels"]),
    ("cropped", [NEAR_EMPTY]),
])
def test_changed_images_raise_an_alarm_naming_measure_and_threshold(served, tmp_path, change, measures):
    """Half the test rows, changed: exit code 1 and an ALARM line per crossed threshold that names
    the feature, the measure, its value and the schema's threshold."""
    serving_dir, metadata = served
    _, images = served_traffic.test_images(limit=300)
    served_traffic.serve_and_log(serving_dir, tmp_path / "logs" / "fmnist", [getattr(served_traffic, change)(images)])
    code, out, summary = _monitor(tmp_path, tmp_path / "logs", metadata)
    assert code == 1, out
    assert summary["alarm"]
    for feature in measures:
        kind, threshold = SERVING_THRESHOLDS[feature]
        lines = [line for line in out.splitlines() if line.startswith(f"ALARM {feature}: ")]
        assert lines, (feature, out)
        measure = {"jensen_shannon_divergence": "JENSEN_SHANNON_DIVERGENCE", "infinity_norm": "L_INFTY"}[kind]
        assert f"{feature}: {measure} " in lines[0] and f"above the threshold {threshold:g}" in lines[0]


def test_no_logs_is_exit_2(served, tmp_path, capsys):
    """Nothing to compare is not 'all well': exit 2 with the reason."""
    _, metadata = served
    (tmp_path / "empty").mkdir()
    assert cli.main(["monitor", "--logs", str(tmp_path / "empty"), "--metadata", metadata,
                     "--out", str(tmp_path / "o")]) == 2
    assert "no request log files" in capsys.readouterr().err


def test_image_measures_on_known_images():
    """The measures on hand-made images: a blank image is near-empty, a white one has a light
    background and brightness 255, a dot off the centre has the offset of its position."""
    from pipeline.monitoring.image_measures import image_measures

    blank = np.zeros((28, 28))
    white = np.full((28, 28), 255)
    dot = np.zeros((28, 28))
    dot[13, 27] = 200
    m = image_measures(np.stack([blank, white, dot]))
    assert m[NEAR_EMPTY].tolist() == [1, 0, 1]
    assert m[LIGHT_BACKGROUND].tolist() == [0, 1, 0]
    assert m[MEAN_BRIGHTNESS][1] == 255
    assert m[CENTRE_OFFSET][2] == pytest.approx(np.hypot(13 - 13.5, 27 - 13.5))
