"""The paired decision's statistics (components/decision.py) against textbook values."""
import math

import pytest

from components.decision import (
    BETTER,
    KEEP,
    NO_EVIDENCE,
    NON_INFERIOR,
    WORSE,
    DecisionPolicy,
    Paired,
    decide,
    difference_interval,
    holm,
    mcnemar_exact,
)
from schema.contract import CLASS_NAMES


def test_exact_mcnemar_matches_the_published_example():
    """Fagerland, Lydersen and Laake (BMC Med Res Methodol 13:91, 2013), the airway
    hyper-responsiveness example: 1 and 7 discordant pairs, exact conditional p = 0.0703
    (= 2 * P(X <= 1), X ~ Binomial(8, 1/2) = 2 * 9/256)."""
    assert mcnemar_exact(1, 7) == pytest.approx(18 / 256)
    assert mcnemar_exact(7, 1) == pytest.approx(18 / 256)   # symmetric
    assert mcnemar_exact(0, 0) == 1.0                        # no discordant row: no evidence
    assert mcnemar_exact(5, 5) == 1.0


def test_interval_is_clopper_pearson_mapped_to_the_difference():
    """x = 0 of m discordant rows: the exact upper bound of p is 1 - (alpha/2)^(1/m) (closed form), so
    the difference runs from -m/n to m/n * (2 * that - 1)."""
    counts = Paired(both_right=90, only_candidate=0, only_served=10, both_wrong=0)
    low, high = difference_interval(counts, 0.05)
    upper_p = 1 - 0.025 ** (1 / 10)
    assert low == pytest.approx(-0.1)
    assert high == pytest.approx(0.1 * (2 * upper_p - 1))
    assert difference_interval(Paired(100, 0, 0, 0), 0.05) == (0.0, 0.0)


def test_interval_and_test_agree_on_zero():
    for b, c in [(62, 26), (40, 26), (26, 40), (10, 30), (3, 0), (100, 100)]:
        counts = Paired(800, b, c, 100)
        low, high = difference_interval(counts, 0.05)
        rejects = mcnemar_exact(b, c) < 0.05
        assert rejects == (low > 0 or high < 0), (b, c, low, high)


def test_holm_adjusted_p_values():
    """Holm (1979): sorted p times (m - rank), made monotone; worked by hand."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5]
    assert holm([0.9, 0.8]) == [1.0, 1.0]   # 0.8 * 2 capped at 1; monotone


def _classes(n: int = 10, **override: Paired) -> list[Paired]:
    per_class = [Paired(n * 8, n, n, 0) for _ in CLASS_NAMES]
    for index, counts in override.items():
        per_class[int(index[1:])] = counts
    return per_class


def test_three_outcomes_with_their_numbers():
    better = decide(Paired(8000, 62, 26, 1912), _classes(), CLASS_NAMES, DecisionPolicy())
    assert (better.outcome, better.blessed) == (BETTER, True)
    assert better.p_value < 0.001 and better.interval[0] > 0
    assert "+0.36 points" in better.summary_line() and "62 vs 26 rows" in better.summary_line()

    worse = decide(Paired(8000, 26, 62, 1912), _classes(), CLASS_NAMES, DecisionPolicy())
    assert (worse.outcome, worse.blessed) == (WORSE, False) and worse.interval[1] < 0

    same = Paired(9000, 30, 30, 940)
    keep = decide(same, _classes(), CLASS_NAMES, DecisionPolicy(no_evidence=KEEP))
    assert (keep.outcome, keep.blessed) == (NO_EVIDENCE, False) and "served model stays" in keep.reason
    tolerant = decide(same, _classes(), CLASS_NAMES, DecisionPolicy(no_evidence=NON_INFERIOR, max_regression=0.005))
    assert (tolerant.outcome, tolerant.blessed) == (NO_EVIDENCE, True)
    strict = decide(same, _classes(), CLASS_NAMES, DecisionPolicy(no_evidence=NON_INFERIOR, max_regression=0.001))
    assert (strict.outcome, strict.blessed) == (NO_EVIDENCE, False) and "not above -0.10" in strict.reason


def test_a_class_lost_with_evidence_refuses_a_better_candidate():
    """Better overall, but Shirt (6): 40 rows only the served model gets right, 2 only the candidate
    -- a 38-point drop on 100 rows; Holm-adjusted p far below 0.05."""
    shirt = Paired(50, 2, 40, 8)
    decision = decide(Paired(8000, 200, 60, 1740), _classes(c6=shirt), CLASS_NAMES, DecisionPolicy())
    assert decision.outcome == BETTER and not decision.blessed
    assert "class 6 Shirt" in decision.reason and "max_class_drop" in decision.reason
    assert [c.class_id for c in decision.classes if c.refused] == [6]
    # A drop within max_class_drop, or one without evidence, is not refused.
    small = Paired(90, 3, 5, 2)
    assert decide(Paired(8000, 200, 60, 1740), _classes(c6=small), CLASS_NAMES, DecisionPolicy()).blessed


def test_policy_names_are_checked():
    with pytest.raises(ValueError, match="no_evidence_policy"):
        decide(Paired(1, 0, 0, 0), _classes(), CLASS_NAMES, DecisionPolicy(no_evidence="maybe"))


def test_paired_properties():
    counts = Paired(both_right=80, only_candidate=6, only_served=4, both_wrong=10)
    assert counts.rows == 100 and math.isclose(counts.difference, 0.02)
    assert counts.candidate_accuracy == 0.86 and counts.served_accuracy == 0.84
