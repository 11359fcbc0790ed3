"""The Evaluator's blessing, amended by the paired decision (components/decision.py).

TFX's Evaluator blesses when TFMA's thresholds pass: here the absolute accuracy threshold and each
class's recall floor (pipeline/pipeline.py's EvalConfig). With a served model to compare with,
that is not enough -- a 0.1-point difference on a few hundred rows is noise, and a gain overall
can hide a lost class -- so after TFMA has run, the PairedOutcomes counts it computed (overall and
per label slice) go through the paired test, and a candidate the test does not support is turned
into NOT_BLESSED in the same blessing artifact. The Pusher and the InfraValidator read that
artifact, so nothing downstream needs to know. The decision's numbers become custom properties
of the blessing (ML Metadata; on Kubeflow the launcher records them likewise) and decision.json
in it (the run summary and report read it back).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

from tfx.dsl.io import fileio
from tfx.utils import io_utils

from components.decision import FIRST_RUN, Decision, DecisionPolicy, Paired, decide
from components.paired_metric import COUNT_NAMES
from schema.contract import CLASS_NAMES, DECISION_FILE, LABEL_KEY, NUM_CLASSES

log = logging.getLogger(__name__)

CANDIDATE = "candidate"     # TFMA's model name for the Evaluator's model (tfma.CANDIDATE_KEY)
BLESSED_KEY, BLESSED_FILE, NOT_BLESSED_FILE = "blessed", "BLESSED", "NOT_BLESSED"  # tfx evaluator constants


def paired_counts(evaluation_uri: str) -> tuple[Paired | None, list[Paired | None]]:
    """(overall, per class) PairedOutcomes counts from TFMA's metrics; None where not computed."""
    import tensorflow_model_analysis as tfma

    overall, per_class = None, [None] * NUM_CLASSES
    for metrics in tfma.load_metrics(evaluation_uri):
        values = {kv.key.name: kv.value.double_value.value for kv in metrics.metric_keys_and_values
                  if kv.key.model_name == CANDIDATE and kv.key.name in COUNT_NAMES and not kv.key.is_diff}
        if len(values) < len(COUNT_NAMES):
            continue
        counts = Paired(*(int(round(values[name])) for name in COUNT_NAMES))
        keys = metrics.slice_key.single_slice_keys
        if not keys:
            overall = counts
        elif len(keys) == 1 and keys[0].column == LABEL_KEY and 0 <= keys[0].int64_value < NUM_CLASSES:
            per_class[keys[0].int64_value] = counts
    return overall, per_class


def decision_for(evaluation_uri: str, has_baseline: bool, policy: DecisionPolicy) -> Decision:
    """The paired decision, or FIRST_RUN when nothing is served (TFMA's thresholds alone decide)."""
    if not has_baseline:
        return Decision(FIRST_RUN, True, "nothing served yet: the accuracy threshold and class floors decide",
                        level=policy.significance_level)
    overall, per_class = paired_counts(evaluation_uri)
    if overall is None:
        raise ValueError(f"{evaluation_uri}: the Evaluator computed no PairedOutcomes for the overall slice "
                         f"(is the metric in the EvalConfig?)")
    empty = Paired(0, 0, 0, 0)
    return decide(overall, [c or empty for c in per_class], CLASS_NAMES, policy)


def amend_blessing(blessing: Any, evaluation_uri: str, has_baseline: bool, policy: DecisionPolicy) -> Decision:
    """Apply the paired decision to the Evaluator's blessing artifact (files and properties)."""
    decision = decision_for(evaluation_uri, has_baseline, policy)
    tfma_blessed = bool(blessing.get_int_custom_property(BLESSED_KEY))
    if tfma_blessed and not decision.blessed:
        fileio.remove(os.path.join(blessing.uri, BLESSED_FILE))
        # As TFX's Evaluator writes it (a GFile opened and closed without a write creates nothing).
        io_utils.write_string_file(os.path.join(blessing.uri, NOT_BLESSED_FILE), "")
        blessing.set_int_custom_property(BLESSED_KEY, 0)
    blessing.set_string_custom_property("decision", decision.outcome)
    blessing.set_string_custom_property("decision_summary", decision.summary_line())
    if decision.counts is not None:
        low, high = decision.interval
        for key, value in (("accuracy_difference", decision.counts.difference), ("p_value", decision.p_value),
                           ("interval_low", low), ("interval_high", high)):
            blessing.set_float_custom_property(key, float(value))
        blessing.set_int_custom_property("only_candidate_right", decision.counts.only_candidate)
        blessing.set_int_custom_property("only_served_right", decision.counts.only_served)
        refused = [f"{c.class_id} {c.name}" for c in decision.classes if c.refused]
        if refused:
            blessing.set_string_custom_property("refused_classes", ", ".join(refused))
    with fileio.open(os.path.join(blessing.uri, DECISION_FILE), "w") as f:
        f.write(json.dumps({**dataclasses.asdict(decision), "summary": decision.summary_line()}, indent=1))
    log.info("decision: %s%s", decision.summary_line(),
             "" if tfma_blessed else " (TFMA's thresholds had already refused it)")
    return decision


def load_decision(blessing_uri: str) -> dict | None:
    """decision.json of a blessing artifact, or None (older runs, or the Evaluator failed)."""
    path = os.path.join(blessing_uri, DECISION_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path) as f:
        return json.loads(f.read())
