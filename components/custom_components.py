"""Stock TFX components with this project's executors swapped in.

Subclassing keeps each component's spec, artifacts and driver (span/version resolution, blessing
inputs) exactly as in TFX, so every downstream tool and the Kubeflow compiler treat them as the
stock ones.
"""
from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components import csv_example_gen, pusher


class FastCsvExampleGen(tfx.components.CsvExampleGen):
    """CsvExampleGen reading integer CSVs (plain or .gz) with NumPy; see csv_example_gen."""
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(csv_example_gen.Executor)


class AtomicPusher(tfx.components.Pusher):
    """Pusher whose new version directory appears by one rename, after a load check."""
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(pusher.Executor)
