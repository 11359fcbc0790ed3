"""`make gpu-check`: on a machine with a GPU, prove the Trainer's model trains on it, and how fast.

    python -m kubeflow.gpu_check --data DIR     # DIR holds fashion-mnist_train.csv.gz
    python -m kubeflow.gpu_check --libraries    # no GPU needed: do TensorFlow's GPU libraries load here?

Runs inside the GPU image (kubeflow/Dockerfile.gpu) with the node's GPU passed in (Makefile
gpu-check; README "GPUs"). One epoch of the fast preset's model, with its batch size and learning
rate, on the training CSV preprocessed as Transform does (components/preprocessing.py: pixels / 255),
once on the GPU and once pinned to the CPU. Exits non-zero unless TensorFlow registered a GPU and a
convolution of the trained model executed on it; prints seconds per epoch of both.

`--libraries` is the part that needs no GPU (tests/e2e/test_kubeflow_image.py runs it in the built
image): each shared library TensorFlow's GPU platform dlopens is looked up the way TensorFlow looks
it up -- in the RUNPATH of TensorFlow's own shared objects ($ORIGIN/../nvidia/<package>/lib...), not
on any path of this process -- and dlopen'ed; so is every other library the nvidia wheels ship. It
prints one JSON object: {"found": {soname: path}, "failed": {soname or path: dlerror}}. Only the
driver (libcuda.so.1, which the device plugin mounts into a GPU pod) may be missing.
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import json
import logging
import mmap
import os
import struct
import sys
import time

log = logging.getLogger(__name__)
PRESET = "fast"
TRAIN_FILE = "fashion-mnist_train.csv.gz"
FIRST_CONV = "conv0_0"   # components/models/cnn.py names its convolutions conv<block>_<i>
# What TensorFlow's GPU platform dlopens, by soname (TensorFlow 2.21's XLA:
# third_party/tsl/tsl/platform/default/dso_loader.h, DsoLoader::Get*DsoHandle, with the CUDA 12 /
# cuDNN 9 versions of tf.sysconfig.get_build_info()). Left out: the driver (libcuda.so.1, mounted by the
# device plugin) and TensorRT's libnvinfer (optional, not in TensorFlow's and-cuda extra).
DRIVER = "libcuda.so.1"
TENSORFLOW_GPU_LIBRARIES = ("libcudart.so.12", "libcublasLt.so.12", "libcublas.so.12", "libcufft.so.11",
                            "libcusparse.so.12", "libcusolver.so.11", "libcupti.so.12", "libcudnn.so.9",
                            "libnccl.so.2")
# The objects holding TensorFlow's GPU platform, whose RUNPATH its dlopen calls search (the wheel
# puts $ORIGIN/../nvidia/<package>/lib there; cuSOLVER's directory only in libtensorflow_cc's).
TENSORFLOW_OBJECTS = ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2")
RTLD_GLOBAL = getattr(os, "RTLD_GLOBAL", 0x100)
_DT_RUNPATH, _DT_RPATH, _DT_STRTAB = 29, 15, 5


def elf_runpath(path: str) -> list[str]:
    """The DT_RUNPATH (else DT_RPATH) directories of a 64-bit little-endian ELF shared object, with
    $ORIGIN expanded: where the dynamic linker looks for what that object dlopens."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:5] != b"\x7fELF\x02":
            raise ValueError(f"{path}: not a 64-bit ELF file")
        (phoff,) = struct.unpack_from("<Q", data, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
        loads, dynamic = [], None
        for i in range(phnum):
            p_type, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
            if p_type == 1:
                loads.append((vaddr, offset, filesz))
            elif p_type == 2:
                dynamic = (offset, filesz)
        if dynamic is None:
            return []
        entries = [struct.unpack_from("<qQ", data, dynamic[0] + j) for j in range(0, dynamic[1], 16)]
        strtab = next(value for tag, value in entries if tag == _DT_STRTAB)
        base = next(offset + strtab - vaddr for vaddr, offset, size in loads if vaddr <= strtab < vaddr + size)
        tags = {tag: value for tag, value in entries}
        if _DT_RUNPATH not in tags and _DT_RPATH not in tags:
            return []
        start = base + tags.get(_DT_RUNPATH, tags.get(_DT_RPATH))
        text = data[start:data.find(b"\0", start)].decode()
    origin = os.path.dirname(os.path.realpath(path))
    return [os.path.normpath(d.replace("$ORIGIN", origin)) for d in text.split(":") if d]


def load_gpu_libraries() -> dict[str, dict[str, str]]:
    """dlopen TensorFlow's GPU libraries as TensorFlow finds them, then every library of the nvidia wheels.

    Repeated until nothing more loads: a library whose dependency (by soname) was not loaded yet is
    retried once it is, as when TensorFlow loads them in its own order."""
    import tensorflow as tf

    search = [d for name in TENSORFLOW_OBJECTS for d in elf_runpath(os.path.join(os.path.dirname(tf.__file__), name))]
    wanted: dict[str, str] = {}
    failed: dict[str, str] = {}
    for soname in TENSORFLOW_GPU_LIBRARIES:
        path = next((os.path.join(d, soname) for d in search if os.path.exists(os.path.join(d, soname))), None)
        if path:
            wanted[soname] = path
        else:
            failed[soname] = f"not in the RUNPATH of {' or '.join(TENSORFLOW_OBJECTS)} ({len(search)} directories)"
    site = os.path.dirname(os.path.dirname(tf.__file__))
    for path in sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib", "*.so*"))):
        wanted.setdefault(os.path.basename(path), path)
    found: dict[str, str] = {}
    pending = dict(wanted)
    while pending:
        errors = {}
        for name, path in pending.items():
            try:
                ctypes.CDLL(path, mode=RTLD_GLOBAL)
                found[name] = path
            except OSError as e:
                errors[name] = str(e)
        if len(errors) == len(pending):
            failed.update(errors)
            break
        pending = {name: wanted[name] for name in errors}
    return {"found": found, "failed": failed}


def _images(path: str) -> tuple:
    import numpy as np

    from components.data_input.csv_table import read_table
    from schema.contract import IMAGE_SIZE

    values = read_table(path).values
    images = np.clip(values[:, 1:], 0, 255).astype("float32").reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1) / 255.0
    return images, values[:, 0].astype("int64")


def _epoch(device: str, images, labels, training) -> tuple[float, str, float]:
    """(seconds of one epoch, device the first convolution ran on, accuracy) with everything on `device`."""
    import tensorflow as tf

    from components.models.registry import build_and_compile
    from schema.contract import TRAINING_ACCURACY_METRIC

    with tf.device(device):
        model = build_and_compile(training)
        model.fit(images[:training.batch_size], labels[:training.batch_size], epochs=1, verbose=0)  # trace once
        start = time.perf_counter()
        history = model.fit(images, labels, batch_size=training.batch_size, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
        ran_on = model.get_layer(FIRST_CONV)(images[:2]).device
    return seconds, ran_on, float(history.history[TRAINING_ACCURACY_METRIC][-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help=f"directory with {TRAIN_FILE}")
    parser.add_argument("--libraries", action="store_true",
                        help="only dlopen TensorFlow's GPU libraries (no GPU needed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.libraries:
        report = load_gpu_libraries()
        print(json.dumps(report, indent=1, sort_keys=True))
        return 1 if report["failed"] else 0
    if not args.data:
        parser.error("--data DIR is needed to train")
    import tensorflow as tf

    from pipeline.config import load_config

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        log.error("no GPU registered by TensorFlow %s (CUDA build %s): run this in the GPU image with the GPU "
                  "passed in (README, 'GPUs')", tf.__version__, tf.sysconfig.get_build_info().get("cuda_version"))
        return 1
    training = load_config(PRESET).training
    images, labels = _images(os.path.join(args.data, TRAIN_FILE))
    log.info("%d images, fast preset: batch %d, learning rate %g; GPU(s): %s", len(images), training.batch_size,
             training.learning_rate, [g.name for g in gpus])
    gpu_seconds, gpu_ran_on, gpu_accuracy = _epoch("/GPU:0", images, labels, training)
    cpu_seconds, cpu_ran_on, cpu_accuracy = _epoch("/CPU:0", images, labels, training)
    print(f"GPU {gpu_seconds:.1f} s/epoch (accuracy {gpu_accuracy:.3f}, convolution on {gpu_ran_on})")
    print(f"CPU {cpu_seconds:.1f} s/epoch (accuracy {cpu_accuracy:.3f}, convolution on {cpu_ran_on})")
    if "GPU" not in gpu_ran_on.upper():
        log.error("the convolution ran on %s, not on the GPU", gpu_ran_on)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
