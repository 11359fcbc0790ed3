"""SpanDrift's check (components/drift.py, drift_between) on statistics of known class mixes and
grey values: the measured distances are those computed here independently, and a measurement is a
problem exactly when it is above schema/schema.pbtxt's threshold."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.drift import drift_between
from schema.contract import LABEL_KEY, NUM_CLASSES, NUM_PIXELS, RAW_PIXELS_KEY
from schema.make_schema import LABEL_DRIFT_THRESHOLD, PIXELS_DRIFT_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = str(ROOT / "schema" / "schema.pbtxt")


def _stats_file(path: Path, labels: np.ndarray, grey: tuple[int, int], seed: int) -> str:
    """StatisticsGen-like FeatureStats.pb of images whose pixels are uniform in [grey[0], grey[1])."""
    import tensorflow_data_validation as tfdv

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({LABEL_KEY: labels,
                          RAW_PIXELS_KEY: [rng.integers(*grey, NUM_PIXELS) for _ in labels]})
    stats = tfdv.generate_statistics_from_dataframe(
        frame, stats_options=tfdv.StatsOptions(schema=tfdv.load_schema_text(SCHEMA)))
    path.write_bytes(stats.SerializeToString())
    return str(path)


def _linf(a: np.ndarray, b: np.ndarray) -> float:
    """L-infinity distance of two label samples' class shares."""
    share = [np.bincount(x, minlength=NUM_CLASSES) / len(x) for x in (a, b)]
    return float(np.abs(share[0] - share[1]).max())


BALANCED = np.repeat(np.arange(NUM_CLASSES), 10)                          # 10% each
SLIGHTLY_MORE_TROUSERS = np.r_[BALANCED, [1, 1]]                           # 12/102 vs 10/102
MANY_MORE_TROUSERS = np.r_[BALANCED, np.ones(30, np.int64)]                # 40/130 vs 10/130


@pytest.mark.parametrize("new_labels, drifted", [(BALANCED, False), (SLIGHTLY_MORE_TROUSERS, False),
                                                 (MANY_MORE_TROUSERS, True)])
def test_label_mix_distance_is_the_l_infinity_of_the_class_shares(tmp_path, new_labels, drifted):
    old = _stats_file(tmp_path / "old.pb", BALANCED, (0, 256), seed=1)
    new = _stats_file(tmp_path / "new.pb", new_labels, (0, 256), seed=2)
    problems, measured = drift_between(new, old, SCHEMA)
    expected = _linf(new_labels, BALANCED)
    assert (expected > LABEL_DRIFT_THRESHOLD) == drifted  # the cases sit on both sides of the threshold
    [label_line] = [m for m in measured if m.startswith(f"feature '{LABEL_KEY}'")]
    assert label_line == (f"feature '{LABEL_KEY}': L-infinity distance {expected:.4f} "
                          f"(threshold {LABEL_DRIFT_THRESHOLD:g})")
    label_problems = [p for p in problems if p.startswith(f"feature '{LABEL_KEY}'")]
    assert label_problems == ([f"feature '{LABEL_KEY}': L-infinity distance {expected:.4f} above the threshold "
                               f"{LABEL_DRIFT_THRESHOLD:g}"] if drifted else [])


def test_grey_values_from_disjoint_ranges_are_maximally_divergent(tmp_path):
    """Same labels; pixels in [0, 100) before and [150, 256) now: the histograms share no bucket, so
    the Jensen-Shannon divergence (base 2) is its maximum, 1 -- far above the threshold."""
    old = _stats_file(tmp_path / "old.pb", BALANCED, (0, 100), seed=1)
    new = _stats_file(tmp_path / "new.pb", BALANCED, (150, 256), seed=2)
    problems, measured = drift_between(new, old, SCHEMA)
    assert f"feature '{RAW_PIXELS_KEY}': Jensen-Shannon divergence 1.0000 (threshold {PIXELS_DRIFT_THRESHOLD:g})" \
        in measured
    assert problems == [f"feature '{RAW_PIXELS_KEY}': Jensen-Shannon divergence 1.0000 above the threshold "
                        f"{PIXELS_DRIFT_THRESHOLD:g}"]


def test_the_same_statistics_have_not_drifted(tmp_path):
    old = _stats_file(tmp_path / "old.pb", BALANCED, (0, 256), seed=1)
    problems, measured = drift_between(old, old, SCHEMA)
    assert problems == []
    assert sorted(m.split("'")[1] for m in measured) == [LABEL_KEY, RAW_PIXELS_KEY]
    assert all(" 0.0000 " in m for m in measured), measured
