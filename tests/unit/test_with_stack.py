"""Two checkouts run `tools/with-stack` at the same time, and each imports its own code.

The stack is shared (one cached environment per requirements.lock); the checkout is never installed
into it. This file uses the standard library only, so it runs in two places:

* under pytest inside the stack (`make test`): each checkout's with-stack sees the outer call's
  FMNIST_STACK_KEY and only switches PYTHONPATH / PATH to its own checkout (the nested path);
* as a script on the host (`python3 tests/unit/test_with_stack.py`, which `make test` runs first):
  each call enters the cached chroot (or venv) for real, both at once.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Generated or not part of a checkout (the stack has no git to ask which files are tracked).
NOT_COPIED = shutil.ignore_patterns(".git", "outputs", "__pycache__", "*.pyc", ".pytest_cache", "*.egg-info")
# Prints when it starts, which `fmnist` and which modules it got, and when it ends; the sleep makes
# the two runs overlap whatever the start-up time of each.
PROBE = ("import time, shutil, pipeline.cli, pipeline._which_checkout as w; t0 = time.time(); time.sleep(2); "
         "print(w.NAME, t0, time.time(), shutil.which('fmnist'), pipeline.cli.__file__, w.__file__)")


def make_checkout(dest: Path, name: str) -> Path:
    """A copy of this working tree (its real tools/with-stack included) with a marker module."""
    shutil.copytree(REPO, dest, ignore=NOT_COPIED)
    (dest / "pipeline" / "_which_checkout.py").write_text(f'NAME = "{name}"\n')
    return dest


def check_two_checkouts(tmp: Path) -> None:
    checkouts = {name: make_checkout(tmp / name, name) for name in ("a", "b")}
    procs = {name: subprocess.Popen([str(top / "tools" / "with-stack"), "python", "-c", PROBE], cwd=top,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, top in checkouts.items()}
    runs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=900)  # the first call on a fresh machine builds the stack
        assert proc.returncode == 0, f"checkout {name}: exit {proc.returncode}\n{err}"
        got, start, end, fmnist, cli, marker = out.split()[-6:]
        top = str(checkouts[name])
        assert got == name, f"checkout {name} imported checkout {got}'s marker"
        assert fmnist == f"{top}/tools/bin/fmnist", f"checkout {name} got `fmnist` from {fmnist}"
        assert cli.startswith(top + "/") and marker.startswith(top + "/"), (name, cli, marker)
        runs[name] = float(start), float(end)
    (a0, a1), (b0, b1) = runs["a"], runs["b"]
    assert a0 < b1 and b0 < a1, f"the two runs did not overlap: {runs}"


def test_two_checkouts_share_the_stack_at_once(tmp_path: Path) -> None:
    if not os.environ.get("FMNIST_STACK_KEY"):
        import pytest
        pytest.skip("run under tools/with-stack (make test); on the host: python3 tests/unit/test_with_stack.py")
    check_two_checkouts(tmp_path)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="with-stack-test-") as d:
        check_two_checkouts(Path(d))
    print("with-stack: two checkouts at once, each imported its own code")
    sys.exit(0)
