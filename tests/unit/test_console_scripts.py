"""Every console script setup.py declares has a shim in tools/bin that runs the same function.

tools/with-stack never installs the checkout, so these shims are how `fmnist` reaches the PATH;
one missing or pointing elsewhere would run nothing, or the wrong code, only under the stack.
"""
from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def console_scripts() -> dict[str, str]:
    """name -> 'module:function', read from setup()'s entry_points without running setup.py."""
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    entry_points = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "entry_points"))
    return dict(spec.replace(" ", "").split("=", 1) for spec in entry_points["console_scripts"])


def test_each_console_script_has_a_shim_calling_its_target() -> None:
    scripts = console_scripts()
    assert scripts, "setup.py declares no console scripts"
    for name, target in scripts.items():
        module, func = target.split(":")
        shim = REPO / "tools" / "bin" / name
        assert shim.is_file() and os.access(shim, os.X_OK), f"tools/bin/{name} missing or not executable"
        assert f"from {module} import {func}\n" in shim.read_text(), f"tools/bin/{name} does not call {target}"


def test_fmnist_shim_runs_this_checkouts_cli() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([str(REPO / "tools" / "bin" / "fmnist"), "--help"], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert "usage: fmnist" in out
