"""The Trainer's GPU image (kubeflow/Dockerfile.gpu, built by `make test`) can use a GPU: proven
without one.

On a GPU node the device plugin mounts the driver (libcuda.so.1) into the pod and nothing else, so
everything else TensorFlow's GPU platform loads must be in the image. Two checks in the built image:
each of those libraries is found where TensorFlow looks (its own RUNPATH) and loads
(`python -m kubeflow.gpu_check --libraries`); and TensorFlow's start-up, with every C++ log line on,
reports only the missing driver. The same checks against the pipeline image (no CUDA libraries, the
image the Trainer ran in before) fail, so they can.

What only a GPU node shows (the driver, kernels running, NCCL between hosts): `make gpu-check`.
"""
from __future__ import annotations

import json
import re

import pytest

from container_engine import ContainerEngine, image_under_test
from kubeflow.gpu_check import DRIVER, TENSORFLOW_GPU_LIBRARIES
from kubeflow.runner import gpu_image

SITE = "/usr/local/lib/python3.13/site-packages"
# Every C++ log line (INFO, and VLOG(1) where dso_loader.cc reports each library it could not load);
# the image's default is TF_CPP_MIN_LOG_LEVEL=2.
LOUD = ["env", "TF_CPP_MIN_LOG_LEVEL=0", "TF_CPP_MAX_VLOG_LEVEL=1"]
NOT_LOADED = re.compile(r"Could not load dynamic library '([^']+)'")
# What TensorFlow says when a GPU library, not the driver, is missing (cudart_stub.cc when
# libcudart cannot be loaded; dso_loader.cc's MaybeTryDlopenGPULibraries for the others).
MISSING_LIBRARY = ("Could not find cuda drivers on your machine", "Cannot dlopen some GPU libraries")


@pytest.fixture(scope="module")
def engine() -> ContainerEngine:
    return ContainerEngine.from_environment()


def _libraries(engine: ContainerEngine, image: str) -> tuple[int, dict]:
    exited = engine.run(image, entrypoint=["python", "-m", "kubeflow.gpu_check", "--libraries"])
    start = exited.log.find("{\n")
    assert start >= 0, exited.log[-3000:]
    return exited.status, json.loads(exited.log[start:exited.log.rindex("}") + 1])


def test_every_library_tensorflows_gpu_platform_loads_is_found_and_loads_in_the_gpu_image(engine):
    status, report = _libraries(engine, gpu_image(image_under_test()))
    assert status == 0 and report["failed"] == {}, report["failed"]
    for soname in TENSORFLOW_GPU_LIBRARIES:
        assert report["found"][soname].startswith(f"{SITE}/nvidia/"), (soname, report["found"].get(soname))
    assert DRIVER not in report["found"]       # the driver is the node's, never the image's


def test_the_pipeline_image_lacks_them(engine):
    status, report = _libraries(engine, image_under_test())
    assert status == 1 and set(TENSORFLOW_GPU_LIBRARIES) <= set(report["failed"]), report


@pytest.mark.parametrize("which", ["gpu", "cpu"])
def test_tensorflow_start_up_reports_only_the_missing_driver(engine, which):
    """TensorFlow starts, looks for a GPU and finds none: in the GPU image only because the driver
    is absent; in the pipeline image also because its libraries are (the failure this guards)."""
    image = gpu_image(image_under_test()) if which == "gpu" else image_under_test()
    exited = engine.run(image, entrypoint=[*LOUD, "python", "-m", "kubeflow.gpu_check", "--data", "/nowhere"])
    assert exited.status == 1 and "no GPU registered by TensorFlow" in exited.log, exited.log[-3000:]
    assert "failed call to cuInit" in exited.log                         # it did try the driver
    not_loaded = set(NOT_LOADED.findall(exited.log))
    missing = [line for line in exited.log.splitlines() if any(m in line for m in MISSING_LIBRARY)]
    if which == "gpu":
        assert not_loaded == {DRIVER} and missing == [], (not_loaded, missing)
    else:
        assert missing, exited.log[-3000:]
