"""The blessing decided on evidence, through the real Evaluator (TFMA on Beam) on the sample.

Candidates and served models are the sample run's trained model and deterministic alterations of
it, saved as SavedModels with the same evaluation signature (so TFMA evaluates them like any
Trainer output): `degraded` answers a wrong class on a fixed share of rows (chosen by a hash of
the row, so both sides of a comparison see the same rows), `without_class` moves one class's
answers to another. A class lost through training (its labels moved in the training data) runs the
whole pipeline, so the Pusher's side is checked too: nothing pushed, serving directory unchanged.
"""
import os
import shutil

import pytest
import tensorflow as tf

from benchmarks.decision_power import run_evaluator
from components.decision import BETTER, FIRST_RUN, NO_EVIDENCE, WORSE, DecisionPolicy
from conftest import NO_LATENCY_GATE, SAMPLE_DATA, read_sample_rows, tree_digest, write_csv_gz
from pipeline.config import PROJECT_ROOT, load_config
from schema import contract
from schema.contract import EVAL_SIGNATURE, EXAMPLES_INPUT, PROBABILITIES_OUTPUT, SCHEMA_FILE

SHIRT, TSHIRT = contract.CLASS_NAMES.index("Shirt"), contract.CLASS_NAMES.index("T-shirt/top")


class _Altered(tf.Module):
    """The trained model's evaluation signature, with its answers altered (see the module doc)."""

    def __init__(self, model_dir: str, wrong_share: float = 0.0, moved_class: int | None = None) -> None:
        super().__init__()
        self.inner = tf.saved_model.load(model_dir)
        self.wrong_buckets = int(round(wrong_share * 100))
        self.moved_class = -1 if moved_class is None else moved_class

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve(self, examples: tf.Tensor) -> dict:
        probabilities = self.inner.signatures[EVAL_SIGNATURE](**{EXAMPLES_INPUT: examples})[PROBABILITIES_OUTPUT]
        top = tf.argmax(probabilities, axis=1, output_type=tf.int32)
        # A wrong class on a fixed share of rows: the probabilities rolled by one column.
        wrong = tf.strings.to_hash_bucket_fast(examples, 100) < self.wrong_buckets
        rolled = tf.roll(probabilities, shift=1, axis=1)
        probabilities = tf.where(wrong[:, None], rolled, probabilities)
        # One class's answers moved to T-shirt/top (its column swapped with T-shirt's).
        order = list(range(contract.NUM_CLASSES))
        if self.moved_class >= 0:
            order[self.moved_class], order[TSHIRT] = TSHIRT, self.moved_class
        swapped = tf.gather(probabilities, order, axis=1)
        return {PROBABILITIES_OUTPUT: tf.where((top == self.moved_class)[:, None], swapped, probabilities)}


@pytest.fixture(scope="module")
def models(sample_run, tmp_path_factory):
    """name -> a Model artifact directory (Format-Serving/ inside, where the Evaluator looks)."""
    from tfx.utils import path_utils

    _, summary = sample_run
    trained = summary.component(contract.TRAINER).outputs["model"][0].uri
    root = tmp_path_factory.mktemp("decision-models")
    made = {"trained": trained}
    for name, kwargs in {"degraded": {"wrong_share": 0.3},
                         "without_shirt": {"moved_class": SHIRT}}.items():
        module = _Altered(path_utils.serving_model_path(trained), **kwargs)
        tf.saved_model.save(module, str(root / name / "Format-Serving"), signatures={EVAL_SIGNATURE: module.serve})
        made[name] = str(root / name)
    return made


def _evaluate(sample_run, tmp_path, candidate: str, served: str | None, policy: DecisionPolicy,
              class_recall_floor: float = 0.0):
    """The project's Evaluator executor on the sample's test split; returns (blessing, TFMA's failures)."""
    from components.report import threshold_failures
    from pipeline.pipeline import eval_config

    config, summary = sample_run
    blessing, evaluation = run_evaluator(summary, tmp_path, candidate, served, policy,
                                         eval_config(config.accuracy_threshold, class_recall_floor), 0.3)
    return blessing, threshold_failures(evaluation.uri)


def _blessed(blessing) -> bool:
    files = set(os.listdir(blessing.uri))
    assert ("BLESSED" in files) != ("NOT_BLESSED" in files), files
    assert blessing.get_int_custom_property("blessed") == int("BLESSED" in files)
    return "BLESSED" in files


@pytest.mark.parametrize("policy,blessed", [("keep", False), ("non_inferior", True)])
def test_identical_candidate_is_no_evidence_decided_by_the_policy(sample_run, models, tmp_path, policy, blessed):
    blessing, _ = _evaluate(sample_run, tmp_path, models["trained"], models["trained"],
                            DecisionPolicy(no_evidence=policy))
    assert blessing.get_string_custom_property("decision") == NO_EVIDENCE
    assert blessing.get_int_custom_property("only_candidate_right") == 0
    assert blessing.get_int_custom_property("only_served_right") == 0
    assert _blessed(blessing) is blessed
    assert f"policy {policy}" in blessing.get_string_custom_property("decision_summary")


def test_clearly_better_candidate_is_blessed_with_its_numbers(sample_run, models, tmp_path):
    blessing, _ = _evaluate(sample_run, tmp_path, models["trained"], models["degraded"], DecisionPolicy())
    assert blessing.get_string_custom_property("decision") == BETTER and _blessed(blessing)
    assert blessing.get_float_custom_property("p_value") < 1e-6
    assert blessing.get_float_custom_property("interval_low") > 0.1
    # The degraded model's rolled answers lose rows the trained model gets right (and, rarely, win one
    # it got wrong by landing on the true class).
    assert blessing.get_int_custom_property("only_candidate_right") > 100
    assert blessing.get_int_custom_property("only_served_right") < 10


def test_worse_candidate_is_refused_with_its_interval(sample_run, models, tmp_path):
    blessing, _ = _evaluate(sample_run, tmp_path, models["degraded"], models["trained"], DecisionPolicy())
    assert blessing.get_string_custom_property("decision") == WORSE and not _blessed(blessing)
    assert blessing.get_float_custom_property("interval_high") < -0.1
    summary = blessing.get_string_custom_property("decision_summary")
    assert summary.startswith("worse (") and "McNemar p=" in summary and "significantly worse" in summary


def test_better_overall_but_a_lost_class_is_refused_naming_it(sample_run, models, tmp_path):
    """Without Shirt vs. the degraded model: better overall with evidence, Shirt dropped with evidence."""
    blessing, _ = _evaluate(sample_run, tmp_path, models["without_shirt"], models["degraded"], DecisionPolicy())
    assert blessing.get_string_custom_property("decision") == BETTER and not _blessed(blessing)
    assert blessing.get_string_custom_property("refused_classes") == f"{SHIRT} Shirt"
    assert "class 6 Shirt" in blessing.get_string_custom_property("decision_summary")
    assert "max_class_drop" in blessing.get_string_custom_property("decision_summary")


def test_first_run_keeps_the_threshold_and_the_class_floors(sample_run, models, tmp_path):
    blessing, failures = _evaluate(sample_run, tmp_path, models["without_shirt"], None, DecisionPolicy(),
                                   class_recall_floor=0.2)
    assert blessing.get_string_custom_property("decision") == FIRST_RUN and not _blessed(blessing)
    assert failures == [f for f in failures if f.startswith("class 6 Shirt recall")] and failures
    assert "below the floor 0.2" in failures[0]
    blessing, failures = _evaluate(sample_run, tmp_path / "t", models["trained"], None, DecisionPolicy(),
                                   class_recall_floor=0.2)
    assert _blessed(blessing) and failures == []


def test_a_class_lost_in_training_is_refused_and_nothing_is_pushed(sample_run, tmp_path):
    """The pipeline end to end: every Shirt in the training CSV relabelled T-shirt/top, the sample's
    model served. The candidate never answers Shirt: refused, naming the class; serving untouched."""
    from pipeline import runner

    _, first = sample_run
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_DATA, data)
    header, rows = read_sample_rows(SAMPLE_DATA / "fashion-mnist_train.csv.gz")
    write_csv_gz(data / "fashion-mnist_train.csv.gz", header,
                 [[TSHIRT if r[0] == SHIRT else r[0], *r[1:]] for r in rows])
    # The data gate already refuses this training set by its class balance (Shirt 10% -> 0%, TFDV's
    # L-infinity drift check, schema/schema.pbtxt); loosened here so the Evaluator's guard is what
    # is tested -- a class can also be lost with its balance intact (e.g. mislabelled images).
    schema = tmp_path / "schema"
    schema.mkdir()
    text = (PROJECT_ROOT / "schema" / SCHEMA_FILE).read_text()
    (schema / SCHEMA_FILE).write_text(text.replace("threshold: 0.05", "threshold: 0.5", 1))
    served = tmp_path / "serving"
    shutil.copytree(os.path.dirname(first.pushed_to), served / "fmnist")
    before = tree_digest(served)
    config = load_config("sample", overrides={"output_root": str(tmp_path / "out"), "data_root": str(data),
                                              "serving_root": str(served), "schema_dir": str(schema),
                                              **NO_LATENCY_GATE})
    summary = runner.run_local(config, progress=False)
    text = runner.format_summary(summary, config)
    assert runner.exit_code(summary) == runner.EXIT_NOT_PUSHED, text
    assert summary.blessed is False and not summary.pushed_to
    assert "class 6 Shirt" in text, text
    assert tree_digest(served) == before
