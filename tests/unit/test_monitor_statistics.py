"""The monitor's numbers (pipeline/monitoring/monitor.py, pipeline/monitoring/monitor_report.py, and the image measures
it feeds TFDV, pipeline/monitoring/image_measures.py): measures of constructed images, the skew of the
served class mix against the expected one at the schema's threshold, and the report's shares.
Expected values are computed here from the images and labels themselves."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.monitoring import monitor, monitor_report
from pipeline.monitoring.image_measures import image_measures
from schema.contract import (
    CENTRE_OFFSET,
    IMAGE_SIZE,
    LIGHT_BACKGROUND,
    MEAN_BRIGHTNESS,
    NEAR_EMPTY,
    NUM_CLASSES,
    PREDICTED_LABEL,
)
from schema.make_schema import SERVING_THRESHOLDS

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = str(ROOT / "schema" / "schema.pbtxt")


def test_image_measures_of_constructed_images():
    black = np.zeros((IMAGE_SIZE, IMAGE_SIZE))
    block = black.copy()
    block[2:6, 20:24] = 200                   # 16 ink pixels, centre of mass at row 3.5, column 21.5
    framed = np.full((IMAGE_SIZE, IMAGE_SIZE), 255.0)
    framed[1:-1, 1:-1] = 0                    # a light border round a dark inside
    measures = image_measures(np.stack([black, block, framed]))
    centre = (IMAGE_SIZE - 1) / 2
    np.testing.assert_allclose(measures[MEAN_BRIGHTNESS], [0, 16 * 200 / 784, 255 * (784 - 26 * 26) / 784])
    assert measures[LIGHT_BACKGROUND].tolist() == [0, 0, 1]
    # Ink share: 0, 16/784 = 2% (< 5%: near-empty), 108/784 = 14%.
    assert measures[NEAR_EMPTY].tolist() == [1, 1, 0]
    np.testing.assert_allclose(measures[CENTRE_OFFSET], [0, np.hypot(3.5 - centre, 21.5 - centre), 0], atol=1e-9)


def _stats(labels: np.ndarray, rng: np.random.Generator):
    """TFDV statistics of images with these predicted classes and random measures."""
    import tensorflow_data_validation as tfdv

    n = len(labels)
    frame = pd.DataFrame({PREDICTED_LABEL: labels, MEAN_BRIGHTNESS: rng.uniform(60, 90, n),
                          CENTRE_OFFSET: rng.uniform(0, 2, n), LIGHT_BACKGROUND: np.zeros(n, np.int64),
                          NEAR_EMPTY: np.zeros(n, np.int64)})
    return tfdv.generate_statistics_from_dataframe(
        frame, stats_options=monitor._stats_options(tfdv.load_schema_text(SCHEMA)))


def _shares(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels, minlength=NUM_CLASSES) / len(labels)


EXPECTED_MIX = np.repeat(np.arange(NUM_CLASSES), 20)                    # 10% each


@pytest.mark.parametrize("served_labels", [
    np.repeat(np.arange(NUM_CLASSES), 20),                              # the same mix
    np.r_[np.repeat(np.arange(NUM_CLASSES), 20), np.full(10, 7)],       # a few more sneakers
    np.r_[np.repeat(np.arange(NUM_CLASSES), 20), np.full(80, 7)],       # many more sneakers
])
def test_served_class_mix_skew_is_the_l_infinity_of_the_shares(served_labels):
    import tensorflow_data_validation as tfdv

    rng = np.random.default_rng(5)
    baseline, served = _stats(EXPECTED_MIX, rng), _stats(served_labels, rng)
    skew = tfdv.validate_statistics(baseline, tfdv.load_schema_text(SCHEMA), environment=monitor.ENVIRONMENT,
                                    serving_statistics=served)
    [mix] = [m for m in monitor._measurements(skew) if m.feature == PREDICTED_LABEL]
    expected = float(np.abs(_shares(served_labels) - _shares(EXPECTED_MIX)).max())
    kind, threshold = SERVING_THRESHOLDS[PREDICTED_LABEL]
    assert (mix.measure, mix.threshold) == ("L_INFTY", pytest.approx(threshold))
    assert mix.value == pytest.approx(expected, abs=1e-6)
    assert mix.crossed == (expected > threshold)
    # The report's bars are the same shares.
    np.testing.assert_allclose(monitor_report._shares(monitor_report._feature(served, PREDICTED_LABEL), NUM_CLASSES),
                               _shares(served_labels))


def test_the_cases_above_sit_on_both_sides_of_the_threshold():
    _, threshold = SERVING_THRESHOLDS[PREDICTED_LABEL]
    few, many = (np.r_[EXPECTED_MIX, np.full(k, 7)] for k in (10, 80))
    assert np.abs(_shares(few) - _shares(EXPECTED_MIX)).max() < threshold
    assert np.abs(_shares(many) - _shares(EXPECTED_MIX)).max() > threshold


def test_measurement_crossing_is_strictly_above():
    assert not monitor.Measurement("x", "L_INFTY", 0.1, 0.1).crossed
    assert monitor.Measurement("x", "L_INFTY", 0.1000001, 0.1).crossed


def test_histogram_shares_of_a_numeric_feature():
    rng = np.random.default_rng(9)
    stats = _stats(EXPECTED_MIX, rng)
    centres, shares = monitor_report._histogram(monitor_report._feature(stats, MEAN_BRIGHTNESS))
    assert shares.sum() == pytest.approx(1.0)
    assert 60 <= centres[shares > 0].min() and centres[shares > 0].max() <= 90   # the values drawn: 60..90
