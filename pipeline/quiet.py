"""Quiet by default: what `fmnist` hides unless run with `--verbose`, and why each is noise.

* TensorFlow's native start-up lines ("oneDNN custom operations are on", "Could not find cuda
  drivers", the absl "before absl::InitializeLog()" banner) are written by its shared libraries
  while they load, before any log level applies; TF_CPP_MIN_LOG_LEVEL does not reach them. So
  TensorFlow is imported here once, with the process's stderr (file descriptor 2) parked in a
  temporary file; should the import fail, what it wrote is replayed before the error.
* "failed call to cuInit" on a machine without a GPU is an ERROR-level native line: native logging
  is set to FATAL only (TF_CPP_MIN_LOG_LEVEL=3, unless the environment already sets a level).
  Python-side failures still surface as exceptions with their messages.
* TFX logs every artifact at INFO, TensorFlow and Beam repeat deprecation warnings: their loggers
  keep warnings (TFX) or errors (TensorFlow, Beam) only; the progress display and the summary read
  ML Metadata, not these lines.

Must run before anything imports TensorFlow (the CLI calls it first thing; nothing it imported
before imports TensorFlow).
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile

# TFX 1.21 warns on every ML Metadata query that its optional ZetaSQL backend is absent; and the
# stock Transform's transformed_examples carry no payload_format (FastCsvExampleGen's Examples do),
# so the Trainer's reader warns that it falls back to tf.Example -- which is what they are.
# TFMA's load_eval_result (pipeline/runner.py, load_metrics) also converts the plots, which the
# summary does not read; with a served-model baseline the evaluation holds two models and, given
# no model name, tensorflow_model_analysis/view/util.py (convert_plots_proto_to_dict) warns "Fail to
# find plots for model name: None" through absl once per slice. The metrics it returns are the
# candidate's either way.
_KNOWN_NOISE = ("ZetaSQL", "property_predicate is not supported",
                "does not have payload_format custom property. Falling back to FORMAT_TF_EXAMPLE",
                "Fail to find plots for model name: None")


def _drop_known_noise(record: logging.LogRecord) -> bool:
    return not any(n in record.getMessage() for n in _KNOWN_NOISE)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its native start-up lines kept off the terminal."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as parked:
        os.dup2(parked.fileno(), 2)
        try:
            importlib.import_module("tensorflow")  # its shared libraries load (and talk) now
        except BaseException:
            os.dup2(saved, 2)
            parked.seek(0)
            sys.stderr.write(parked.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_by_default(uses_tensorflow: bool) -> None:
    """Set the quiet defaults; with `uses_tensorflow`, import TensorFlow now, quietly (commands
    that never touch TensorFlow, such as `fmnist data download`, should not pay its start-up)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if uses_tensorflow:
        import_tensorflow_quietly()
    from absl import logging as absl_logging

    # Through absl's verbosity flag, not the logger: a later absl flags parse would reset the
    # logger's level and silence the INFO records the progress display reads (pipeline/runner.py).
    absl_logging.set_verbosity(absl_logging.INFO)
    for name in ("tensorflow", "apache_beam"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("absl").addFilter(_drop_known_noise)
    # absl's own handler would print everything at INFO; only the progress handler should.
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
