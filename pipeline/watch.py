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
import re
import sys
import time
from typing import Callable

from pipeline.config import PipelineConfig

log = logging.getLogger(__name__)

_SPAN = re.compile(r"span-([0-9]{1,18})")


def _listdir(path: str) -> list[str]:
    if "://" in path:
        from tfx.dsl.io import fileio
        return [n.rstrip("/") for n in fileio.listdir(path)] if fileio.isdir(path) else []
    return os.listdir(path) if os.path.isdir(path) else []


def _exists(path: str) -> bool:
    if "://" in path:
        from tfx.dsl.io import fileio
        return fileio.exists(path)
    return os.path.exists(path)


def newest_span(data_root: str) -> int | None:
    """The highest span-<N> directory in data_root (what ExampleGen's driver will ingest)."""
    spans = [int(m.group(1)) for name in _listdir(data_root) if (m := _SPAN.fullmatch(name))]
    return max(spans) if spans else None


def stored_spans(span_store: str) -> list[int]:
    """Spans the store holds completely (span.json written), as components/spans.py writes them."""
    return sorted(int(m.group(1)) for name in _listdir(span_store)
                  if (m := _SPAN.fullmatch(name)) and _exists(os.path.join(span_store, name, "span.json")))


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
