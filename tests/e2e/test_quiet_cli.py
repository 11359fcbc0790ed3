"""`fmnist` is quiet by default: TensorFlow's native start-up lines stay off the terminal unless
--verbose (pipeline/quiet.py). Each case is a fresh interpreter, as TensorFlow loads once."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.config import PROJECT_ROOT

NOISE = ("oneDNN", "cuda drivers", "cuInit", "absl::InitializeLog")
# What the CLI does before a TensorFlow command in quiet mode, then a first op (device set-up).
QUIET = "from pipeline import quiet; quiet.quiet_by_default(uses_tensorflow=True)\n"
FIRST_OP = "import tensorflow as tf; print(int(tf.reduce_sum(tf.constant([1, 2]))))\n"


def _stderr(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr[-2000:]
    return done.stderr


def test_tensorflow_start_up_lines_are_hidden_by_default_and_shown_verbose():
    verbose = _stderr(FIRST_OP)
    if not any(n in verbose for n in NOISE):
        pytest.skip("this TensorFlow build prints none of the known start-up lines here")
    quiet = _stderr(QUIET + FIRST_OP)
    assert not [n for n in NOISE if n in quiet], quiet[-2000:]


def test_a_failing_import_still_shows_what_it_wrote(tmp_path):
    """The parked stderr is replayed when the import fails, so a broken install is not silent."""
    fake = tmp_path / "tensorflow.py"
    fake.write_text("import os\nos.write(2, b'native complaint\\n')\nraise ImportError('broken tensorflow')\n")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
            "from pipeline import quiet\n"
            "try:\n    quiet.import_tensorflow_quietly()\nexcept ImportError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert "broken tensorflow" in done.stdout and "native complaint" in done.stderr, (done.stdout, done.stderr)
