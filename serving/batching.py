"""Server-side batching: concurrent requests to one signature run as one model call.

Same knobs as TF Serving's batching parameters: a batch is closed when it holds
`max_batch_size` rows or `batch_timeout_micros` after its first request arrived, whichever comes
first. A request larger than max_batch_size runs alone. Each caller gets exactly its rows back,
or the exception the batched call raised. Requests without a common batch dimension (scalar
inputs, no inputs, inputs of different lengths) and answers without one run unbatched, as TF
Serving's batching session requires every input and output to be batched along dimension 0.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

import numpy as np

from serving.metrics import NO_METRICS, Metrics

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    max_batch_size: int = 64
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 1000
    thread_pool_name: str = "batch_threads"  # BatchingParameters' default; the queuing metric's label


@dataclasses.dataclass
class _Item:
    feeds: dict[str, np.ndarray]
    rows: int
    future: Future
    enqueued: float = 0.0  # time.monotonic() when queued (queuing-latency metric)


class BatchScheduler:
    """One queue and one worker thread per (model version, signature)."""

    def __init__(self, run: RunFn, params: BatchingParameters, metrics: Metrics = NO_METRICS) -> None:
        self.run, self.params, self.metrics = run, params, metrics
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=params.max_enqueued_batches)
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(next(iter(feeds.values())))
        if rows >= self.params.max_batch_size:
            return self.run(feeds)
        item = _Item(feeds, rows, Future(), time.monotonic())
        self._queue.put(item, timeout=30)
        return item.future.result()

    def close(self) -> None:
        self._queue.put(None)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, rows = [first], first.rows
            deadline = time.monotonic() + self.params.batch_timeout_micros / 1e6
            while rows < self.params.max_batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                if rows + item.rows > self.params.max_batch_size or item.feeds.keys() != first.feeds.keys():
                    self._run([item])  # does not fit: its own call, keeps the order simple
                    continue
                batch.append(item)
                rows += item.rows
            self._run(batch)

    def _run(self, batch: list[_Item]) -> None:
        now = time.monotonic()
        self.metrics.batch(self.params.thread_pool_name, [i.rows for i in batch], [now - i.enqueued for i in batch])
        try:
            feeds = {k: np.concatenate([i.feeds[k] for i in batch]) for k in batch[0].feeds}
            out = self.run(feeds)
        except Exception as e:
            if len(batch) > 1:  # one bad request must not fail its neighbours: retry each alone
                for item in batch:
                    self._run([item])
                return
            batch[0].future.set_exception(e)
            return
        rows = sum(i.rows for i in batch)
        if len(batch) > 1 and any(np.ndim(v) == 0 or len(v) != rows for v in out.values()):
            for item in batch:  # answers without a batch dimension cannot be split: one call each
                self._run([item])
            return
        start = 0
        for item in batch:
            item.future.set_result({k: v[start:start + item.rows] for k, v in out.items()})
            start += item.rows


def batchable(feeds: dict[str, np.ndarray]) -> bool:
    """Every input has the same, non-zero length along dimension 0."""
    if not feeds:
        return False
    lengths = {np.shape(v)[0] if np.ndim(v) else -1 for v in feeds.values()}
    return len(lengths) == 1 and min(lengths) > 0


class Batchers:
    """Lazily created schedulers keyed by (model, version, signature)."""

    def __init__(self, params: BatchingParameters | None, metrics: Metrics = NO_METRICS) -> None:
        self.params, self.metrics = params, metrics
        self._schedulers: dict[Any, BatchScheduler] = {}
        self._lock = threading.Lock()

    def run(self, key: Any, run: RunFn, feeds: dict[str, np.ndarray], api: str = "Predict") -> dict[str, np.ndarray]:
        """`run(feeds)` for model `key[0]`, batched with concurrent calls of the same key when
        batching is on; each model call is timed as TF Serving's runtime latency of `api`."""
        if self.metrics is not NO_METRICS:
            run = _timed(run, self.metrics, key[0], api)
        if self.params is None or not batchable(feeds):
            return run(feeds)
        with self._lock:
            scheduler = self._schedulers.get(key)
            if scheduler is None:
                scheduler = self._schedulers[key] = BatchScheduler(run, self.params, self.metrics)
        return scheduler.submit(feeds)

    def close(self) -> None:
        with self._lock:
            for s in self._schedulers.values():
                s.close()
            self._schedulers.clear()


def _timed(run: RunFn, metrics: Metrics, model: str, api: str) -> RunFn:
    """`run`, recording its wall time as the runtime latency (util.cc RecordRuntimeLatency)."""
    def timed(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        try:
            return run(feeds)
        finally:
            metrics.runtime(model, api, time.perf_counter() - started)
    return timed
