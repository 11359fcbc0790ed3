"""requirements-gpu.lock is requirements.lock plus TensorFlow's CUDA libraries, and nothing else.

The GPU image (kubeflow/Dockerfile.gpu) installs it on top of the pipeline image: a shared package
at another version there would mean the Trainer on a GPU runs another stack than every other step.
"""
from __future__ import annotations

import importlib.util
import re

from pipeline.config import PROJECT_ROOT

# What `importlib.metadata.requires("tensorflow")` lists under the and-cuda extra (TensorFlow 2.21).
CUDA_PACKAGES = {"nvidia-cublas-cu12", "nvidia-cuda-cupti-cu12", "nvidia-cuda-nvcc-cu12", "nvidia-cuda-nvrtc-cu12",
                 "nvidia-cuda-runtime-cu12", "nvidia-cudnn-cu12", "nvidia-cufft-cu12", "nvidia-curand-cu12",
                 "nvidia-cusolver-cu12", "nvidia-cusparse-cu12", "nvidia-nccl-cu12", "nvidia-nvjitlink-cu12"}


def _pins(name: str) -> dict[str, str]:
    lines = (PROJECT_ROOT / name).read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))


def _gpu_lock_module():
    spec = importlib.util.spec_from_file_location("gpu_lock", PROJECT_ROOT / "tools" / "gpu_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_lock_is_the_lock_plus_the_cuda_libraries_at_the_same_versions():
    cpu, gpu = _pins("requirements.lock"), _pins("requirements-gpu.lock")
    assert {k: gpu.get(k) for k in cpu} == cpu               # every shared package, same version
    assert set(gpu) - set(cpu) == CUDA_PACKAGES


def test_each_cuda_library_is_pinned_at_the_lower_bound_tensorflow_declares():
    import importlib.metadata

    gpu = _pins("requirements-gpu.lock")
    declared = [r for r in importlib.metadata.requires("tensorflow") if 'extra == "and-cuda"' in r]
    assert len(declared) == len(CUDA_PACKAGES)
    for requirement in declared:
        name = re.match(r"[\w.-]+", requirement).group(0)
        assert f">={gpu[name]}" in requirement.replace(" ", ""), (requirement, gpu[name])


def test_committed_gpu_lock_is_what_the_tool_derives():
    module = _gpu_lock_module()
    assert (PROJECT_ROOT / "requirements-gpu.lock").read_text() == \
        module.gpu_lock((PROJECT_ROOT / "requirements.lock").read_text())
