"""The replica scaling rule (components/training/strategy.py, replica_batches) and what run_fn accepts from
a launcher: the global batch never depends on the number of replicas."""
from __future__ import annotations

import pytest

from components.training.strategy import replica_batches
from components.training.training_config import ConfigError, TrainingConfig
from schema import contract


@pytest.mark.parametrize("batch, replicas, per_replica", [(64, 1, 64), (64, 2, 32), (256, 8, 32), (100, 3, 34)])
def test_global_batch_is_the_configured_batch_and_each_replica_computes_its_share(batch, replicas, per_replica):
    assert replica_batches(batch, replicas) == (batch, per_replica)
    assert per_replica * replicas >= batch > (per_replica - 1) * replicas   # rounded up, never a lost example


def test_zero_replicas_is_refused():
    with pytest.raises(ValueError):
        replica_batches(64, 0)


def test_launcher_keys_reach_run_fn_and_are_ignored_but_a_typo_is_still_refused():
    config = {"epochs": 3, contract.TFJOB_CONFIG_KEY: {"workers": 2},
              "ai_platform_training_args": {"project": "p"}, "ai_platform_enable_vertex": True}
    assert TrainingConfig.from_custom_config(config).epochs == 3
    with pytest.raises(ConfigError, match="epoch"):
        TrainingConfig.from_custom_config({"epoch": 3})


def test_the_vertex_keys_are_the_extensions_own():
    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer import executor

    theirs = {executor.TRAINING_ARGS_KEY, executor.JOB_ID_KEY, executor.LABELS_KEY, executor.ENABLE_UCAIP_KEY,
              executor.UCAIP_REGION_KEY, constants.ENABLE_VERTEX_KEY, constants.VERTEX_REGION_KEY}
    assert set(contract.VERTEX_LAUNCHER_KEYS) == theirs
