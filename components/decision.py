"""Whether a candidate replaces the served model: a paired test on the same rows, and a class guard.

Why paired: both models predict the same evaluation rows, so the rows both get right (or both get
wrong) say nothing about which is better; only the discordant rows do -- `b` rows only the
candidate gets right, `c` rows only the served model gets right. Comparing two accuracies as if
they came from independent samples would ignore that pairing and need a gain several times larger
to see the same evidence (on 10,000 rows the two accuracies' own standard errors are ~0.24 points
each, while the paired difference's is ~0.2 points times sqrt(discordance/4%)).

The test is McNemar's, exact: under "the models are equally good", each discordant row is a fair
coin, so b ~ Binomial(b + c, 1/2) (McNemar 1947; the exact form e.g. in Fagerland, Lydersen and
Laake, "The McNemar test for binary matched-pairs data", BMC Med Res Methodol 13:91, 2013). Exact
rather than the chi-square approximation because the discordant counts are small on the sample
(tens of rows) and per class. Chosen over a paired bootstrap: exact, no resampling noise (the same
rows give the same decision on every machine), and nothing to tune.

The interval for the accuracy difference d = (b - c) / n is the exact (Clopper-Pearson) interval
for the share p = b / (b + c) of discordant rows won by the candidate, mapped through
d = (b + c) / n * (2p - 1): conditional on the discordant count, as the test is, so "the interval
excludes 0" and "the test rejects" agree.

Per class, the same test on the rows of that class measures a drop of the candidate's recall
against the served model's; ten classes are ten tests, so their p-values are corrected with Holm's
step-down method (Holm 1979), which keeps the family-wise error rate at the level without
Bonferroni's loss of power. Class floors (an absolute recall every class must reach) are TFMA's
per-slice thresholds in the EvalConfig (pipeline/pipeline.py), not decided here.

Imports nothing of TensorFlow: unit-tested in tests/unit/test_decision.py against scipy and
textbook values.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from scipy import stats

BETTER, NO_EVIDENCE, WORSE, FIRST_RUN = "better", "no evidence", "worse", "first run"
KEEP, NON_INFERIOR = "keep", "non_inferior"   # what "no evidence" does (DecisionPolicy.no_evidence)
POLICIES = (KEEP, NON_INFERIOR)


@dataclasses.dataclass(frozen=True)
class Paired:
    """Outcomes of two models on the same rows."""
    both_right: int
    only_candidate: int      # b: rows only the candidate gets right
    only_served: int         # c: rows only the served model gets right
    both_wrong: int

    @property
    def rows(self) -> int:
        return self.both_right + self.only_candidate + self.only_served + self.both_wrong

    @property
    def difference(self) -> float:
        """Candidate accuracy minus served accuracy on these rows."""
        return (self.only_candidate - self.only_served) / self.rows if self.rows else 0.0

    @property
    def candidate_accuracy(self) -> float:
        return (self.both_right + self.only_candidate) / self.rows if self.rows else 0.0

    @property
    def served_accuracy(self) -> float:
        return (self.both_right + self.only_served) / self.rows if self.rows else 0.0


@dataclasses.dataclass(frozen=True)
class DecisionPolicy:
    """How the paired evidence decides; every default in one place (PipelineConfig reads these)."""
    significance_level: float = 0.05      # two-sided, for the overall test and the class drops
    no_evidence: str = KEEP               # KEEP the served model, or NON_INFERIOR: bless if proven no-loss
    max_regression: float = 0.005         # NON_INFERIOR: the interval's lower end must be above -this
    max_class_drop: float = 0.03          # a class's recall may not drop more than this with evidence


@dataclasses.dataclass(frozen=True)
class ClassVerdict:
    class_id: int
    name: str
    counts: Paired
    p_value: float               # exact McNemar on the class's rows
    adjusted_p_value: float      # Holm-corrected over the classes
    refused: bool

    @property
    def drop(self) -> float:
        """Served recall minus candidate recall on this class (positive = the candidate is worse)."""
        return -self.counts.difference


@dataclasses.dataclass(frozen=True)
class Decision:
    outcome: str                 # BETTER, NO_EVIDENCE, WORSE or FIRST_RUN
    blessed: bool                # what the paired rules allow (TFMA's thresholds apply besides)
    reason: str                  # one line: why, with its numbers
    counts: Paired | None = None
    p_value: float | None = None
    interval: tuple[float, float] | None = None
    classes: tuple[ClassVerdict, ...] = ()
    level: float = 0.05          # the significance level the test and the interval used

    def summary_line(self) -> str:
        """`better (+1.20 points, McNemar p=0.003, 62 vs 26 rows)`: what the run summary shows."""
        if self.counts is None:
            return f"{self.outcome} ({self.reason})"
        low, high = self.interval or (0.0, 0.0)
        return (f"{self.outcome} ({100 * self.counts.difference:+.2f} points, "
                f"{100 * (1 - self.level):.0f}% interval [{100 * low:+.2f}, {100 * high:+.2f}], "
                f"McNemar p={self.p_value:.3g}, {self.counts.only_candidate} vs {self.counts.only_served} rows)"
                f" -- {self.reason}")


def mcnemar_exact(only_candidate: int, only_served: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of b against b + c trials at 1/2."""
    discordant = only_candidate + only_served
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(only_candidate, discordant, 0.5).pvalue)


def difference_interval(counts: Paired, level: float) -> tuple[float, float]:
    """Interval for the accuracy difference at confidence 1 - level (see the module docstring)."""
    discordant = counts.only_candidate + counts.only_served
    if discordant == 0 or counts.rows == 0:
        return 0.0, 0.0
    ci = stats.binomtest(counts.only_candidate, discordant, 0.5).proportion_ci(1 - level, method="exact")
    scale = discordant / counts.rows
    return scale * (2 * ci.low - 1), scale * (2 * ci.high - 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def class_verdicts(per_class: Sequence[Paired], names: Sequence[str],
                   policy: DecisionPolicy) -> tuple[ClassVerdict, ...]:
    """Each class's paired test; refused = a drop beyond max_class_drop that survives Holm."""
    p_values = [mcnemar_exact(c.only_candidate, c.only_served) for c in per_class]
    adjusted = holm(p_values)
    verdicts = []
    for class_id, (counts, p, q) in enumerate(zip(per_class, p_values, adjusted)):
        drop = -counts.difference
        refused = counts.only_served > counts.only_candidate and q < policy.significance_level \
            and drop > policy.max_class_drop
        verdicts.append(ClassVerdict(class_id, names[class_id], counts, p, q, refused))
    return tuple(verdicts)


def decide(overall: Paired, per_class: Sequence[Paired], names: Sequence[str],
           policy: DecisionPolicy) -> Decision:
    """The paired decision between a candidate and the served model (see the module docstring)."""
    if policy.no_evidence not in POLICIES:
        raise ValueError(f"no_evidence_policy must be one of {', '.join(POLICIES)}, not {policy.no_evidence!r}")
    alpha = policy.significance_level
    p = mcnemar_exact(overall.only_candidate, overall.only_served)
    interval = difference_interval(overall, alpha)
    classes = class_verdicts(per_class, names, policy)
    if p < alpha and overall.only_candidate > overall.only_served:
        outcome, blessed, reason = BETTER, True, "significant gain"
    elif p < alpha:
        outcome, blessed, reason = WORSE, False, "significantly worse than the served model"
    elif policy.no_evidence == NON_INFERIOR and interval[0] > -policy.max_regression:
        outcome, blessed, reason = NO_EVIDENCE, True, (
            f"no significant difference; policy non_inferior: the interval's lower end "
            f"{100 * interval[0]:+.2f} points is above -{100 * policy.max_regression:.2f}")
    elif policy.no_evidence == NON_INFERIOR:
        outcome, blessed, reason = NO_EVIDENCE, False, (
            f"no significant difference; policy non_inferior: the interval's lower end "
            f"{100 * interval[0]:+.2f} points is not above -{100 * policy.max_regression:.2f}")
    else:
        outcome, blessed, reason = NO_EVIDENCE, False, "no significant difference; policy keep: the served model stays"
    refused = [c for c in classes if c.refused]
    if refused:
        blessed = False
        reason = "; ".join([reason] + [
            f"class {c.class_id} {c.name}: recall {100 * c.counts.candidate_accuracy:.1f}% vs served "
            f"{100 * c.counts.served_accuracy:.1f}% (drop {100 * c.drop:.1f} points > max_class_drop "
            f"{100 * policy.max_class_drop:.1f}, Holm-adjusted McNemar p={c.adjusted_p_value:.3g})"
            for c in refused])
    return Decision(outcome, blessed, reason, overall, p, interval, classes, alpha)
