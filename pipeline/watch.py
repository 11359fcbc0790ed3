"""`fmnist run --watch` and `--if-new-span`: run the span pipeline when a new span has arrived.

A span counts as handled once the span store has it (SpanWindow stores a span after it passed
validation and the drift check) or once this process has run it (a refused span is not retried
until a newer one arrives). `--watch` polls `data_root` every `interval` seconds, a bounded
number of times, so it can run in the foreground, under systemd or in a test; `--if-new-span`
checks once, which is what a cron line wants:

    */15 * * * * cd /srv/fmnist && tools/with-stack fmnist run --preset sample-spans --data /data/fmnist --if-new-span
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable

from pipeline.config import PipelineConfig
from schema.contract import SPAN_MARKER, span_number

log = logging.getLogger(__name__)

def _listdir(path: str) -> list[str]:
    if "://" in path:
        from tfx.dsl.io import fileio
        return [n.rstrip("/") for n in fileio.listdir(path)] if fileio.isdir(path) else []
    return os.listdir(path) if os.path.isdir(path) else []


def _isdir(path: str) -> bool:
    if "://" in path:
        from tfx.dsl.io import fileio
        return fileio.isdir(path)
    return os.path.isdir(path)


def _exists(path: str) -> bool:
    if "://" in path:
        from tfx.dsl.io import fileio
        return fileio.exists(path)
    return os.path.exists(path)


def span_dirs(data_root: str) -> dict[int, str]:
    """{N: path} of the span-<N> directories in data_root (files of such a name left out)."""
    return {span: os.path.join(data_root, name) for name in sorted(_listdir(data_root))
            if (span := span_number(name)) is not None and _isdir(os.path.join(data_root, name))}


def newest_span(data_root: str) -> int | None:
    """The highest span-<N> directory in data_root (what ExampleGen's driver will ingest)."""
    return max(span_dirs(data_root), default=None)


def stored_spans(span_store: str) -> list[int]:
    """Spans the store holds completely (SPAN_MARKER written), as components/spans.py writes them
    (that module's stored_spans reads the same through TensorFlow, which this CLI path avoids)."""
    return sorted(span for name in _listdir(span_store)
                  if (span := span_number(name)) is not None and _exists(os.path.join(span_store, name, SPAN_MARKER)))


def pending_span(config: PipelineConfig, handled: set[int] = frozenset()) -> int | None:
    """The newest span of data_root if it is neither stored nor handled, else None."""
    newest = newest_span(config.data_root)
    if newest is None or newest in handled or newest in stored_spans(config.span_store_dir):
        return None
    return newest


def watch(config: PipelineConfig, run: Callable[[], int], interval: float, max_polls: int,
          max_runs: int, sleep: Callable[[float], None] = time.sleep) -> int:
    """Poll up to max_polls times; run the pipeline for each new span (at most max_runs runs).

    Returns the exit status of the last run (0 if nothing ran)."""
    handled: set[int] = set()
    status, runs = 0, 0
    for poll in range(max_polls):
        span = pending_span(config, handled)
        if span is not None:
            print(f"watch: span {span} arrived in {config.data_root}; running the pipeline", file=sys.stderr)
            status = run()
            handled.add(span)
            runs += 1
            if runs >= max_runs:
                break
            continue  # look again at once: another span may have arrived during the run
        if poll + 1 < max_polls:
            sleep(interval)
    print(f"watch: {runs} run(s) in {poll + 1} poll(s)", file=sys.stderr)
    return status
