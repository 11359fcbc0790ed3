"""The run's progress display reads LocalDagRunner's per-component records by their structure."""
from __future__ import annotations

import io
import logging
import re

from pipeline.runner import _ProgressHandler


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("absl", logging.INFO, __file__, 1, msg, args, None)


def test_components_are_counted_from_the_runner_records_only():
    out = io.StringIO()
    handler = _ProgressHandler(out)
    for record in (_record("Component %s is running.", "Trainer"),
                   _record("Component Trainer is running."),          # same text, no structure: ignored
                   _record("Using deployment config:\n %s", "x"),
                   _record("Component %s is finished.", "Trainer"),
                   _record("Component %s is running.", "Evaluator")):
        handler.emit(record)
    lines = [re.fullmatch(r"  \[ *(\d+)\] (\S+) +(running|done).*", line) for line in out.getvalue().splitlines()]
    assert [m.groups() for m in lines] == [("1", "Trainer", "running"), ("1", "Trainer", "done"),
                                           ("2", "Evaluator", "running")]
