"""What quiet mode drops from the absl logger (pipeline/quiet.py) -- and what it keeps."""
from __future__ import annotations

import logging

from pipeline import quiet


def _record(msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord("absl", logging.WARNING, "util.py", 676, msg, args, None)


def test_tfma_plots_warning_for_an_unnamed_model_is_dropped():
    # The call as tensorflow_model_analysis/view/util.py makes it (format string and arguments).
    record = _record("Fail to find plots for model name: %s . " "Available model names are [%s]",
                     None, "candidate, baseline")
    assert not quiet._drop_known_noise(record)


def test_other_warnings_are_kept():
    assert quiet._drop_known_noise(_record("Fail to find plots for model name: %s", "candidate"))
    assert quiet._drop_known_noise(_record("component %s failed", "Trainer"))
