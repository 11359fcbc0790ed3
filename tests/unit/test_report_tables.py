"""The run report's tables (components/report.py): per-class precision/recall/F1/support from the
confusion matrix, the decision table's recalls, the data table's rows. Expected values are counted
here from the (actual, predicted) pairs and the counts, not from the report's own arithmetic."""
from __future__ import annotations

import re

import numpy as np
import pytest

from components.report import data_rows, decision_section, per_class_table
from schema.contract import CLASS_NAMES, NUM_CLASSES


def test_per_class_table_counts_from_the_pairs():
    rng = np.random.default_rng(3)
    actual = rng.integers(0, NUM_CLASSES, 500)
    predicted = np.where(rng.random(500) < 0.7, actual, rng.integers(0, NUM_CLASSES, 500))
    predicted[predicted == 9] = 8            # class 9 is never predicted: precision 0 by definition
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    np.add.at(confusion, (actual, predicted), 1)

    table = per_class_table(confusion)
    assert [r["class_id"] for r in table] == list(range(NUM_CLASSES))
    assert [r["class_name"] for r in table] == list(CLASS_NAMES)
    for c, row in enumerate(table):
        hits = int(np.sum((actual == c) & (predicted == c)))
        support, claimed = int(np.sum(actual == c)), int(np.sum(predicted == c))
        precision = hits / claimed if claimed else 0.0
        recall = hits / support
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert row["support"] == support
        assert row["precision"] == pytest.approx(precision) and row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1)
    assert table[9]["precision"] == 0.0 and table[9]["f1"] == 0.0 and table[9]["support"] > 0


def test_perfect_and_empty_classes():
    confusion = np.diag([5] * NUM_CLASSES)
    confusion[3, 3] = 0                        # class 3: no rows at all
    table = per_class_table(confusion)
    assert all(r["precision"] == r["recall"] == r["f1"] == 1.0 for r in table if r["class_id"] != 3)
    assert table[3] == {"class_id": 3, "class_name": CLASS_NAMES[3], "precision": 0.0, "recall": 0.0,
                             "f1": 0.0, "support": 0}


def _cells(html_rows: str) -> list[list[str]]:
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html_rows)]


def test_decision_table_recalls_and_difference():
    counts = {"both_right": 80, "only_candidate": 12, "only_served": 3, "both_wrong": 5}
    decision = {"summary": "better <by> evidence", "classes": [
        {"class_id": 6, "name": "Shirt", "counts": counts, "refused": False, "adjusted_p_value": 0.0213},
        {"class_id": 0, "name": "T-shirt/top", "counts": {"both_right": 0, "only_candidate": 0, "only_served": 0,
                                                          "both_wrong": 0}, "refused": True, "adjusted_p_value": 1.0},
    ]}
    page = decision_section(decision)
    assert '<p id="decision">better &lt;by&gt; evidence</p>' in page   # the summary is escaped
    shirt, empty = _cells(page.split('id="decision-classes">', 1)[1])[-2:]
    # Candidate recall = rows it gets right / rows of the class = (80 + 12) / 100; served (80 + 3) / 100.
    assert shirt == ["6", "Shirt", "0.9200", "0.8300", "+9.00", "12", "3", "0.0213", "ok"]
    assert empty[2:5] == ["0.0000", "0.0000", "+0.00"] and empty[-1] == "REFUSED: dropped with evidence"


def test_no_decision_no_section():
    assert decision_section(None) == ""
    assert decision_section({"summary": "first model", "classes": []}) == \
        '<h2>Decision against the served model</h2>\n<p id="decision">first model</p>'


def test_data_rows_per_split():
    report = {
        "splits": {
            "train": {"files": [{"file": "/d/a_train.csv"}], "rows": 60000, "blank_lines": 2, "rows_refused": 0,
                      "ignored": [{"file": "a_train.csv.bak", "why": "backup"}]},
            "test": {"files": [{"file": "/d/a_test.csv"}, {"file": "/d/b_test.csv"}], "rows": 10000,
                     "blank_lines": 0, "rows_refused": 3},
        },
        "duplicates": {"splits": {"test": {"also_in_reference": 25, "share": 25 / 10000}}},
    }
    rows = data_rows(report)
    train, test = [re.findall(r"<td>(.*?)</td>", r) for r in rows.splitlines()]
    assert train == ["train", "a_train.csv<br><small>ignored: a_train.csv.bak (backup)</small>", "60000", "2", "0", "-"]
    assert test == ["test", "a_test.csv<br>b_test.csv", "10000", "0", "3", "25 (0.25%)"]
    assert "no data report" in data_rows(None)
