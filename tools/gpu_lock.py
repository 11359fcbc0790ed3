"""Writes requirements-gpu.lock: requirements.lock plus TensorFlow's CUDA libraries.

    tools/with-stack python tools/gpu_lock.py > requirements-gpu.lock

Why derived, not hand-written: the GPU image (kubeflow/Dockerfile.gpu) must run exactly the
stack every other step runs, plus the libraries TensorFlow's GPU platform loads. Those are the
twelve `nvidia-*-cu12` packages of TensorFlow's `and-cuda` extra, and each is pinned here at the
extra's lower bound: the version TensorFlow's release was built against
(`tf.sysconfig.get_build_info()`: CUDA 12.5.1, cuDNN 9), not the newest one the range allows.
tests/unit/test_gpu_lock.py checks the committed file is what this prints.
"""
from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
EXTRA = "and-cuda"
HEADER = ("# requirements.lock plus TensorFlow's `and-cuda` extra, each at its lower bound (the CUDA 12.5 / cuDNN 9\n"
          "# versions TensorFlow was built against). Generated: tools/with-stack python tools/gpu_lock.py\n")


def cuda_pins(distribution: str = "tensorflow") -> list[str]:
    """`name==lower bound` of every requirement of `distribution`'s and-cuda extra."""
    pins = []
    for requirement in importlib.metadata.requires(distribution) or []:
        spec, _, marker = requirement.partition(";")
        if f'extra == "{EXTRA}"' not in marker:
            continue
        name = re.match(r"[A-Za-z0-9_.-]+", spec.strip()).group(0)
        lower = re.search(r">=\s*([^,\s]+)", spec) or re.search(r"==\s*([^,\s]+)", spec)
        if not lower:
            raise SystemExit(f"{requirement!r}: no lower bound to pin")
        pins.append(f"{name}=={lower.group(1)}")
    return pins


def gpu_lock(lock_text: str) -> str:
    """The GPU lock's text: the CPU lock's pins (unchanged) and the CUDA pins, in pip freeze's order."""
    pins = [line for line in lock_text.splitlines() if line and not line.startswith("#")]
    return HEADER + "\n".join(sorted(pins + cuda_pins(), key=str.lower)) + "\n"


if __name__ == "__main__":
    sys.stdout.write(gpu_lock(LOCK.read_text()))
