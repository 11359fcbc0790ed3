"""The project's error base: every refusal the project raises for the user to act on derives from it.

Why one base: `fmnist`'s entry point (pipeline/cli.py, `run_command`) turns any of them into one
line `fmnist <command>: <message>` and the error's `exit_code`, in one place, instead of every
command catching its own errors and choosing its own status. A subclass keeps the built-in base it
had before (`ValueError`, `RuntimeError`, ...) beside this one, so existing `except ValueError`
callers (and Beam, TFX) see what they saw.

It lives in components/, the lowest package with errors of its own; pipeline/ and kubeflow/ derive
from it too. serving/ stays a generic library with its own base (serving/errors.py).
"""
from __future__ import annotations


class FmnistError(Exception):
    """A refusal with a message for the user; `fmnist` exits with `exit_code` (2: the input, the
    config or the environment must change; 1 where a command documents otherwise)."""

    exit_code: int = 2
