"""Picks the tf.distribute strategy from what the Trainer's machine (or cluster) offers.

Kubeflow starts the same Trainer code on a CPU pod, a GPU pod or several worker pods (TF_CONFIG);
the choice is made at run time so the pipeline definition never has to know.
"""
from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

log = logging.getLogger(__name__)


def cluster_workers(tf_config: str | None = None) -> int:
    """Number of workers (chief included) TF_CONFIG lists; 1 when unset."""
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw:
        return 1
    cluster = json.loads(raw).get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


DEVICES_ENV = "FMNIST_MIRRORED_DEVICES"


def replica_batches(batch_size: int, replicas: int) -> tuple[int, int]:
    """(global batch, per-replica batch) for `replicas` replicas in sync; the scaling rule.

    The rule: the configured batch_size is the global batch and the learning rate is left as
    configured, whatever the number of replicas; each replica computes the gradient of
    batch_size / replicas examples (rounded up; tf.distribute splits the global batch) and the
    all-reduce sums them. N replicas therefore take the same optimizer steps, with the same
    learning-rate schedule, on the same batches as one process, and reach the same accuracy in the
    same epochs (tests/e2e/test_distributed_training.py checks within 2 points on the sample). A
    step gets ~N times faster, not the epoch count smaller.

    Why not the linear scaling rule (global batch x N, learning rate x N; Goyal et al. 2017): it
    changes the optimisation with N (N times fewer steps per epoch, a larger Adam step), needs a
    warm-up to hold accuracy and was tuned for SGD, so "N replicas reach the accuracy of one" would
    depend on N. Whoever wants the larger batch for throughput sets batch_size and learning_rate
    together, explicitly; the Trainer logs the per-replica batch it ends up with.
    """
    if batch_size < 1 or replicas < 1:
        raise ValueError(f"batch_size {batch_size} and replicas {replicas} must be >= 1")
    return batch_size, -(-batch_size // replicas)


def choose_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored across TF_CONFIG workers, Mirrored across local GPUs, else default.

    FMNIST_MIRRORED_DEVICES (e.g. "/gpu:0,/gpu:2" or "/cpu:0,/cpu:1") names the devices to mirror
    over explicitly: to leave some GPUs of a node alone, or to run the multi-device path on
    logical CPU devices, which is how the tests exercise the GPU code path without a GPU.
    """
    devices = [d for d in os.environ.get(DEVICES_ENV, "").split(",") if d]
    if cluster_workers() > 1:
        strategy: tf.distribute.Strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif devices:
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    elif tf.config.list_physical_devices("GPU"):
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    log.info("distribution strategy: %s with %d replica(s)", type(strategy).__name__,
             strategy.num_replicas_in_sync)
    return strategy


def is_chief() -> bool:
    """True unless TF_CONFIG names this task as a non-chief worker (only the chief exports)."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return True
    task = json.loads(raw).get("task", {})
    cluster = json.loads(raw).get("cluster", {})
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0
