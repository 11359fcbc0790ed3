"""Server-side batching as TF Serving's `--enable_batching` does it: concurrent requests to one
signature run as one model call, on a pool of batch threads shared by every model.

Written from TF Serving's and TensorFlow's sources (read, not copied):

* tensorflow/core/kernels/batching_util/shared_batch_scheduler.h -- `SharedBatchScheduler`
  (`Options`, `QueueOptions` and their defaults; `ThreadLogic`/`GetNextWorkItem_Locked`: the
  batch threads round-robin over the queues; `Queue::Schedule`, `ValidateBatchTaskQueueCapacity`:
  the queue-full and task-too-large errors; `Queue::ScheduleBatch`/`PeekBatchPriorityImpl`: when
  the open batch may be closed and run).
* tensorflow_serving/batching/batching_session.cc -- `BatchingSession::MergeInputTensors`
  (`allowed_batch_sizes` padding with the last task's first row, `pad_variable_length_inputs`),
  `SplitOutputTensors`, `ProcessBatch`; `CreateBasicBatchingSession` (allowed sizes checks).
* tensorflow_serving/batching/batching_util.cc -- `RoundToLowestAllowedBatchSize`, `AddPadding`
  (pads each dimension with the tensor's first element).
* tensorflow_serving/servables/tensorflow/bundle_factory_util.{h,cc} -- `CreateBatchScheduler`
  (one scheduler per server: `num_batch_threads`, `thread_pool_name`), `GetQueueOptions` (a field
  absent from the file keeps the scheduler's default), `WrapSessionForBatching` (one queue per
  signature; the last allowed batch size must equal max_batch_size).
* tensorflow_serving/model_servers/server.cc -- `--enable_batching` without
  `--batching_parameters_file` sets only `thread_pool_name: "model_server_batch_threads"`.

How a request flows: it joins the open (newest) batch of its signature's queue; the batch closes
when it is full or a new task does not fit. A batch thread that is free takes a closed batch, or
the open one once its oldest task has waited `batch_timeout_micros` (0 = at once). So with the
default timeout 0 a lone request runs as soon as it arrives, and batches form only while all
`num_batch_threads` threads are busy: under load, requests that arrive during a model call run
together in the next. Each caller gets exactly its rows back.

Deliberate differences from TF Serving, each so one request cannot fail its neighbours:
* a task whose inputs differ from the open batch's in shape (beyond dimension 0) or dtype starts
  a new batch, unless `pad_variable_length_inputs` pads them to one shape (TF Serving merges them
  and fails the whole batch with FAILED_PRECONDITION "Tensors with name ... have different
  shapes and padding is turned off");
* a batch whose model call fails is retried request by request (TF Serving gives every task of
  the batch the error);
* requests without a common batch dimension (scalars, inputs of different lengths, no inputs)
  and answers without one run unbatched (TF Serving refuses them: "Batching Run() input tensors
  must have equal 0th-dimension size").
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

from serving.errors import Error, InvalidArgument, Unavailable
from serving.metrics import NO_METRICS, Metrics

log = logging.getLogger(__name__)

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def max_parallelism() -> int:
    """port::MaxParallelism(): the CPUs this process may run on (the num_batch_threads default)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class BatchingConfigError(Error, ValueError):
    """Parameters TF Serving refuses (it fails the model load with INVALID_ARGUMENT and this text)."""


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """tensorflow.serving.BatchingParameters (session_bundle_config.proto). Every default is the one
    TF Serving uses when the field is absent: SharedBatchScheduler::QueueOptions
    (input_batch_size_limit 1000, batch_timeout_micros 0, max_enqueued_batches 10) and ::Options
    (num_batch_threads = port::MaxParallelism(), thread_pool_name "batch_threads")."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(default_factory=max_parallelism)
    thread_pool_name: str = "batch_threads"  # also the queuing-latency metric's label
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None  # None: max_batch_size (GetQueueOptions)

    @property
    def execution_batch_size(self) -> int:
        """The largest batch one model call runs (QueueOptions.max_execution_batch_size, which
        equals the input limit unless large batches are split)."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size is not None:
            return self.max_execution_batch_size
        return self.max_batch_size

    @property
    def queue_length(self) -> int:
        """max_enqueued_batches as the queue applies it: SharedBatchScheduler::AddQueue rewrites 0
        to 1 when large batches are not split ("many existing models ... rely on this")."""
        if self.max_enqueued_batches == 0 and not self.enable_large_batch_splitting:
            return 1
        return self.max_enqueued_batches

    def validate(self) -> "BatchingParameters":
        """The checks TF Serving makes when it builds the scheduler and a queue, with its texts:
        SharedBatchScheduler::Create, AddQueueAfterRewritingOptions, WrapSessionForBatching and
        CreateBasicBatchingSession (allowed_batch_sizes)."""
        if self.num_batch_threads < 1:
            raise BatchingConfigError(f"num_batch_threads must be positive; was {self.num_batch_threads}")
        if self.max_batch_size < 1:
            raise BatchingConfigError(f"input_batch_size_limit must be positive; was {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise BatchingConfigError(f"batch_timeout_micros must be non-negative; was {self.batch_timeout_micros}")
        if self.queue_length < 1:
            raise BatchingConfigError(f"max_enqueued_batches must be positive; was {self.max_enqueued_batches}")
        if self.enable_large_batch_splitting and self.max_batch_size < self.execution_batch_size:
            # errors::InvalidArgument concatenates its arguments (StrCat): bool as 1, no spaces.
            raise BatchingConfigError(
                "When enable_large_batch_splitting is true, input_batch_size_limit must be greater than or "
                f"equal to max_execution_batch_size.1{self.max_batch_size}{self.execution_batch_size}")
        sizes = self.allowed_batch_sizes
        if sizes:
            if self.enable_large_batch_splitting:
                if any(b <= a for a, b in zip(sizes, sizes[1:])):
                    raise BatchingConfigError("allowed_batch_sizes entries must be monotonically increasing")
                if sizes[-1] != self.execution_batch_size:
                    raise BatchingConfigError(
                        "Last entry in allowed_batch_sizes must be equal to max_execution_batch_size; last "
                        f"entry was {sizes[-1]}; expected {self.execution_batch_size}")
            elif sizes[-1] != self.max_batch_size:
                raise BatchingConfigError("Last entry in allowed_batch_sizes must match max_batch_size; last "
                                          f"entry was {sizes[-1]}; expected {self.max_batch_size}")
        return self


# --- tasks and batches -----------------------------------------------------------------------------------
class _Task:
    """One request's rows (or, with large-batch splitting, a slice of them) waiting for its answer.

    `done` is a lock held until the answer is set: the cheapest thing a Python thread can block
    on and another release (a Future's condition variable costs about twice as much)."""

    __slots__ = ("feeds", "rows", "enqueued", "done", "result", "error", "shape_key")

    def __init__(self, feeds: dict[str, np.ndarray], rows: int, shape_key: Any) -> None:
        self.feeds, self.rows, self.shape_key = feeds, rows, shape_key
        self.enqueued = time.monotonic()
        self.done = threading.Lock()
        self.done.acquire()
        self.result: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None

    def finish(self, result: dict[str, np.ndarray] | None = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.release()

    def wait(self) -> dict[str, np.ndarray]:
        self.done.acquire()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class _Batch:
    __slots__ = ("tasks", "rows", "started", "shape_key")

    def __init__(self) -> None:
        self.tasks: list[_Task] = []
        self.rows = 0
        self.started = 0.0  # time.monotonic() of the first task (open_batch_start_time_micros_)
        self.shape_key: Any = None


def _shape_key(feeds: dict[str, np.ndarray]) -> tuple:
    """What must be equal for two tasks' inputs to be concatenated unpadded: per input, its dtype
    and its shape beyond dimension 0."""
    return tuple((k, v.dtype.str, v.shape[1:]) for k, v in feeds.items())


# --- one queue per signature ------------------------------------------------------------------------------
class _Queue:
    """shared_batch_scheduler.h's internal::Queue: a deque of batches, the last one open.

    All state is guarded by the scheduler's condition (`SharedBatchScheduler._cond`)."""

    def __init__(self, run: RunFn, params: BatchingParameters, metrics: Metrics) -> None:
        self.run, self.params, self.metrics = run, params, metrics
        self.batches: collections.deque[_Batch] = collections.deque([_Batch()])
        self.limit = params.execution_batch_size
        self.timeout = params.batch_timeout_micros / 1e6
        self.padding = tuple(params.allowed_batch_sizes)

    # -- called with the scheduler's lock held
    def schedule(self, tasks: Sequence[_Task], rows: int) -> None:
        """Add a request's task(s) (Queue::Schedule). Raises TF Serving's errors, leaving the queue
        unchanged: INVALID_ARGUMENT for a task over max_batch_size, UNAVAILABLE when full."""
        self._check_capacity(rows, tasks[0].shape_key)
        for task in tasks:
            open_batch = self.batches[-1]
            fits = open_batch.rows + task.rows <= self.limit
            same_shape = self.params.pad_variable_length_inputs or open_batch.shape_key in (None, task.shape_key)
            if open_batch.tasks and not (fits and same_shape):
                self.batches.append(_Batch())
                open_batch = self.batches[-1]
            if not open_batch.tasks:
                open_batch.started, open_batch.shape_key = task.enqueued, task.shape_key
            open_batch.tasks.append(task)
            open_batch.rows += task.rows

    def _check_capacity(self, rows: int, shape_key: Any) -> None:
        """ValidateBatchTaskQueueCapacity, with its texts. A task of another shape needs a batch of
        its own, so it counts as not fitting the open batch."""
        p = self.params
        if rows > p.max_batch_size:
            raise InvalidArgument(f"Task size {rows} is larger than maximum input batch size {p.max_batch_size}")
        open_batch, enqueued = self.batches[-1], len(self.batches)
        open_rows = open_batch.rows
        if open_batch.tasks and not p.pad_variable_length_inputs and open_batch.shape_key != shape_key:
            open_rows = p.max_batch_size
        if p.enable_large_batch_splitting:
            capacity = (p.queue_length - enqueued) * self.limit + (self.limit - open_rows)
            if rows > capacity:
                raise Unavailable(
                    "The batch scheduling queue to which this task was submitted is full; task size is "
                    f"{rows} but scheduling capacity is only {capacity} (num_enqueued_batches={enqueued}, "
                    f"max_enqueued_batches={p.queue_length}, open_batch_size={open_rows}, "
                    f"max_execution_batch_size={self.limit})")
        elif open_rows + rows > p.max_batch_size and enqueued >= p.queue_length:
            raise Unavailable("The batch scheduling queue to which this task was submitted is full; currently "
                              f"{enqueued} batches enqueued and max_enqueued_batches is {p.queue_length}")

    def schedulable_at(self) -> float | None:
        """When a free thread may take a batch from this queue: now-or-earlier when a closed batch
        waits or the open one is full, the open batch's start + timeout otherwise, None if empty."""
        if len(self.batches) > 1:
            return 0.0
        open_batch = self.batches[0]
        if not open_batch.tasks:
            return None
        if open_batch.rows >= self.limit:
            return 0.0
        return open_batch.started + self.timeout

    def take(self, now: float) -> _Batch | None:
        """Queue::ScheduleBatch: the front closed batch, or the open one if it is due."""
        if len(self.batches) == 1:
            due = self.schedulable_at()
            if due is None or due > now:
                return None
            self.batches.append(_Batch())
        return self.batches.popleft()

    # -- called by a batch thread, without the lock
    def process(self, batch: _Batch) -> None:
        """BatchingSession::ProcessBatch: merge (with padding), one model call, split."""
        now = time.monotonic()
        tasks = batch.tasks
        padded = _allowed_size(self.padding, batch.rows)
        self.metrics.batch(self.params.thread_pool_name, [t.rows for t in tasks],
                           [now - t.enqueued for t in tasks], padded)
        try:
            feeds = self._merge(tasks, padded - batch.rows)
            out = self.run(feeds)
        except Exception as e:
            if len(tasks) > 1:  # one bad request must not fail its neighbours: each alone
                self._one_by_one(tasks)
            else:
                tasks[0].finish(error=e)
            return
        if len(tasks) > 1 and any(np.ndim(v) == 0 or len(v) != padded for v in out.values()):
            self._one_by_one(tasks)  # answers without a batch dimension cannot be split
            return
        start = 0
        for task in tasks:
            task.finish({k: v[start:start + task.rows] for k, v in out.items()})
            start += task.rows

    def _one_by_one(self, tasks: list[_Task]) -> None:
        for task in tasks:
            single = _Batch()
            single.tasks, single.rows = [task], task.rows
            self.process(single)

    def _merge(self, tasks: list[_Task], padding: int) -> dict[str, np.ndarray]:
        if len(tasks) == 1 and not padding:
            return tasks[0].feeds
        feeds = {}
        for key in tasks[0].feeds:
            parts = [t.feeds[key] for t in tasks]
            if self.params.pad_variable_length_inputs:
                parts = _pad_to_common_shape(parts)
            if padding:  # MergeInputTensors: copies of the last task's first row
                parts.append(np.repeat(parts[-1][:1], padding, axis=0))
            feeds[key] = np.concatenate(parts)
        return feeds


def _allowed_size(allowed: tuple[int, ...], rows: int) -> int:
    """RoundToLowestAllowedBatchSize: the smallest allowed size >= rows (rows when none is, or
    when no sizes are configured)."""
    for size in allowed:
        if size >= rows:
            return size
    return rows


def _pad_to_common_shape(parts: list[np.ndarray]) -> list[np.ndarray]:
    """AddPadding for each task's tensor: every dimension after the 0th grown to the largest in
    the batch, filled with the tensor's first element (batching_util.h)."""
    if len({p.shape[1:] for p in parts}) == 1:
        return parts
    ndim = max(p.ndim for p in parts)
    if any(p.ndim != ndim for p in parts):
        raise InvalidArgument("All tensors in a batch must have the same rank to be padded")
    target = [max(p.shape[d] for p in parts) for d in range(1, ndim)]
    padded = []
    for p in parts:
        widths = [(0, 0)] + [(0, t - s) for t, s in zip(target, p.shape[1:])]
        if p.size and any(w for _, w in widths):
            p = np.pad(p, widths, mode="constant", constant_values=p.flat[0])
        padded.append(p)
    return padded


# --- the shared scheduler ----------------------------------------------------------------------------------
class SharedBatchScheduler:
    """`num_batch_threads` batch slots shared by every queue (model version x signature), taken
    round-robin over the queues (SharedBatchScheduler::ThreadLogic). A thread with nothing due
    sleeps until the earliest open batch's timeout or until a task makes a batch schedulable.

    At most `num_batch_threads` batches run at once, as in TF Serving. One shortcut: a request
    that finds its queue empty, its batch due at once (timeout 0, or full) and a slot free runs
    that batch -- itself alone -- on its own thread instead of waking a batch thread for it. The
    batch is the one a free batch thread would take at that moment; the two thread switches it
    saves are a lone client's whole cost of batching."""

    def __init__(self, params: BatchingParameters, metrics: Metrics = NO_METRICS) -> None:
        self.params, self.metrics = params.validate(), metrics
        self._cond = threading.Condition(threading.Lock())
        self._queues: list[_Queue] = []
        self._next = 0
        self._closed = False
        self._idle = 0  # batch threads waiting for work
        self._busy = 0  # batches being processed (by batch threads or inline): <= num_batch_threads
        self._threads = [threading.Thread(target=self._thread_logic, name=f"{params.thread_pool_name}_{i}",
                                          daemon=True) for i in range(params.num_batch_threads)]
        for t in self._threads:
            t.start()

    def add_queue(self, run: RunFn) -> _Queue:
        queue = _Queue(run, self.params, self.metrics)
        with self._cond:
            self._queues.append(queue)
        return queue

    def submit(self, queue: _Queue, feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """Schedule one request on `queue` and wait for its rows of the answer."""
        key = _shape_key(feeds)
        if self.params.enable_large_batch_splitting and rows > queue.limit:
            tasks = self._split(queue, feeds, rows, key)
        else:
            tasks = [_Task(feeds, rows, key)]
        inline = None
        with self._cond:
            if self._closed:
                raise Unavailable("the batch scheduler is shut down")
            queue.schedule(tasks, rows)
            due = queue.schedulable_at()
            now = time.monotonic()
            alone = len(queue.batches) == 1 and queue.batches[0].tasks[0] is tasks[0]
            if (alone and len(tasks) == 1 and due is not None and due <= now
                    and self._busy < self.params.num_batch_threads):
                inline = queue.take(now)
                self._busy += 1
            elif self._idle and due is not None and (due <= now or alone):
                # Wake a thread for a batch due now, or for a new deadline to sleep until (this
                # task opened the queue's only batch); otherwise the sleepers' deadlines stand.
                self._cond.notify()
        if inline is not None:
            self._process(queue, inline)
        if len(tasks) == 1:
            return tasks[0].wait()
        parts = [t.wait() for t in tasks]  # SplitInputTask's pieces, answered in order
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _split(self, queue: _Queue, feeds: dict[str, np.ndarray], rows: int, key: Any) -> list[_Task]:
        """SplitInputTask: the first piece fills the open batch, the rest max_execution_batch_size each."""
        with self._cond:
            first = queue.limit - queue.batches[-1].rows
        sizes = [first] if first > 0 else []
        while sum(sizes) < rows:
            sizes.append(min(queue.limit, rows - sum(sizes)))
        tasks, start = [], 0
        for size in sizes:
            tasks.append(_Task({k: v[start:start + size] for k, v in feeds.items()}, size, key))
            start += size
        return tasks

    def _thread_logic(self) -> None:
        while True:
            with self._cond:
                while True:
                    queue, batch, wake_at = self._next_work()
                    if batch is not None:
                        break
                    if self._closed and wake_at is None and not self._busy:
                        return
                    self._idle += 1
                    self._cond.wait(None if wake_at is None else max(wake_at - time.monotonic(), 0.0))
                    self._idle -= 1
                self._busy += 1
                self._wake_if_due()
            assert queue is not None
            self._process(queue, batch)

    def _process(self, queue: _Queue, batch: _Batch) -> None:
        """Run one batch in a slot taken under the lock; free the slot after."""
        try:
            queue.process(batch)
        except BaseException as e:  # never leave a caller waiting
            log.exception("batch processing failed")
            for task in batch.tasks:
                if task.result is None and task.error is None:
                    task.finish(error=e)
        finally:
            with self._cond:
                self._busy -= 1
                if self._closed:
                    self._cond.notify_all()  # threads waiting for this slot may now exit
                else:
                    self._wake_if_due()

    def _wake_if_due(self) -> None:
        """(lock held) Wake a sleeping batch thread when a free slot has queued work (due, or with
        a deadline someone must sleep until)."""
        if self._idle and self._busy < self.params.num_batch_threads and any(
                q.schedulable_at() is not None for q in self._queues):
            self._cond.notify()

    def _next_work(self) -> tuple[_Queue | None, _Batch | None, float | None]:
        """GetNextWorkItem_Locked: with a slot free, the next queue in round-robin order with a due
        batch; else the earliest time one becomes due (None: nothing queued, or no slot free --
        a slot's release wakes a thread)."""
        if self._busy >= self.params.num_batch_threads:
            return None, None, None
        now, n, wake_at = time.monotonic(), len(self._queues), None
        for i in range(n):
            queue = self._queues[(self._next + i) % n]
            batch = queue.take(now)
            if batch is not None:
                self._next = (self._next + i + 1) % n
                return queue, batch, None
            due = queue.schedulable_at()
            if due is not None and (wake_at is None or due < wake_at):
                wake_at = due
        return None, None, wake_at

    def close(self) -> None:
        """Stop the threads once every queued task is answered (QueueHandle's destructor)."""
        with self._cond:
            self._closed = True
            for queue in self._queues:
                queue.timeout = 0.0  # what is left runs now
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=60)


def batchable(feeds: dict[str, np.ndarray]) -> bool:
    """Every input has the same, non-zero length along dimension 0."""
    if not feeds:
        return False
    lengths = {np.shape(v)[0] if np.ndim(v) else -1 for v in feeds.values()}
    return len(lengths) == 1 and min(lengths) > 0


class Batchers:
    """One SharedBatchScheduler for the server (as CreateBatchScheduler makes one per bundle
    factory) and a queue per (model, version, signature, outputs), made on first use (TF Serving
    makes one per signature when it wraps a version's session)."""

    def __init__(self, params: BatchingParameters | None, metrics: Metrics = NO_METRICS) -> None:
        self.params, self.metrics = params, metrics
        self.scheduler = SharedBatchScheduler(params, metrics) if params is not None else None
        self._queues: dict[Any, _Queue] = {}
        self._lock = threading.Lock()

    def run(self, key: Any, run: RunFn, feeds: dict[str, np.ndarray], api: str = "Predict") -> dict[str, np.ndarray]:
        """`run(feeds)` for model `key[0]`, batched with concurrent calls of the same key when
        batching is on; each model call is timed as TF Serving's runtime latency of `api`."""
        if self.metrics is not NO_METRICS:
            run = _timed(run, self.metrics, key[0], api)
        if self.scheduler is None or not batchable(feeds):
            return run(feeds)
        queue = self._queues.get(key)
        if queue is None:
            with self._lock:
                queue = self._queues.get(key)
                if queue is None:
                    queue = self._queues[key] = self.scheduler.add_queue(run)
        return self.scheduler.submit(queue, feeds, len(next(iter(feeds.values()))))

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
        with self._lock:
            self._queues.clear()


def _timed(run: RunFn, metrics: Metrics, model: str, api: str) -> RunFn:
    """`run`, recording its wall time as the runtime latency (util.cc RecordRuntimeLatency)."""
    def timed(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        try:
            return run(feeds)
        finally:
            metrics.runtime(model, api, time.perf_counter() - started)
    return timed

