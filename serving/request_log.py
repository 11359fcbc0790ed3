"""Sampled request logging: TF Serving's `logging_config`, which open-source TF Serving parses but
cannot act on (it registers no log collector; tensorflow/serving#408, #1846, #2223, #4111).

A model's config entry may carry

    logging_config {
      log_collector_config { filename_prefix: "/var/log/fmnist/requests" }
      sampling_config { sampling_rate: 0.1 }
    }

and then a uniformly random share `sampling_rate` of its successful requests is written, request
and response together, as `tensorflow.serving.PredictionLog` records -- the format of TF Serving's
warm-up file and of TFX's BulkInferrer -- to TFRecord files `<filename_prefix>-<UTC start>-<pid>-
<seq>.tfrecord`, a new file once one reaches its size limit.

Logging must never slow down or fail a request, so the request thread only draws the sample and
puts a closure on a bounded queue (no copy, no serialisation); one writer thread per model builds
and writes the records. A full queue drops the record and counts it; the counts appear in the
model's status (GetModelStatus / REST GET). The writer flushes at least every `flush_seconds`, so
a crash loses at most that tail (plus a partly written last record, which readers skip); a
normal stop (SIGTERM) writes everything queued and closes the files.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os
import queue
import random
import threading
import time
from typing import Any, Callable, Iterator

from tensorflow_serving.apis import prediction_log_pb2

log = logging.getLogger(__name__)

SUFFIX = ".tfrecord"
_STOP = object()


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    """One model's `logging_config`: where to write and which share of requests."""
    filename_prefix: str
    sampling_rate: float


@dataclasses.dataclass(frozen=True)
class LoggerLimits:
    """Server-wide settings of the log writers (command-line flags)."""
    queue_size: int = 4096
    max_file_bytes: int = 64 * 1024 * 1024
    flush_seconds: float = 1.0
    batch_seconds: float = 0.05   # the writer's pause between batches (records wait at most this)


@dataclasses.dataclass
class Counts:
    logged: int = 0     # records written
    dropped: int = 0    # sampled but not written (queue full or write error)


Builder = Callable[[], prediction_log_pb2.PredictionLog]


class RequestLogger:
    """One model's log: sampling, a bounded queue, a writer thread, rotating TFRecord files."""

    def __init__(self, model: str, config: LoggingConfig, limits: LoggerLimits,
                 rng: random.Random | None = None) -> None:
        self.model, self.config, self.limits = model, config, limits
        self._rng = rng or random.Random()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, limits.queue_size))
        self._counts: dict[int, Counts] = {}
        self._counts_lock = threading.Lock()
        self._writer: Any = None
        self._file_bytes = 0
        self._seq = 0
        self.files: list[str] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"request-log-{model}", daemon=True)
        self._thread.start()

    # --- request threads ---------------------------------------------------------------------
    def offer(self, version: int, signature_name: str, build: Builder) -> bool:
        """Sample this request and queue its record; never blocks. True when queued."""
        rate = self.config.sampling_rate
        if rate <= 0 or (rate < 1 and self._rng.random() >= rate) or self._closed:
            return False
        try:
            self._queue.put_nowait((version, signature_name, build))
            return True
        except queue.Full:
            self._count(version, dropped=1)
            return False

    def counts(self, version: int) -> Counts:
        with self._counts_lock:
            c = self._counts.get(version, Counts())
            return Counts(c.logged, c.dropped)

    def totals(self) -> Counts:
        """Written and dropped records over all versions."""
        with self._counts_lock:
            return Counts(sum(c.logged for c in self._counts.values()), sum(c.dropped for c in self._counts.values()))

    def _count(self, version: int, logged: int = 0, dropped: int = 0) -> None:
        with self._counts_lock:
            c = self._counts.setdefault(version, Counts())
            c.logged += logged
            c.dropped += dropped
            first_drop = dropped and c.dropped == dropped
        if first_drop:
            log.warning("request log of model %s: a record was dropped (queue of %d full or write failed); "
                        "drops are counted in the model status", self.model, self.limits.queue_size)

    # --- writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        """Wake, write everything queued, sleep a little: a writer that woke for every record
        would take the interpreter lock from the request threads hundreds of times a second."""
        last_flush = time.monotonic()
        dirty = False
        stopping = False
        while not stopping:
            try:
                batch = [self._queue.get(timeout=self.limits.flush_seconds)]
            except queue.Empty:
                batch = []
            while batch and len(batch) < self.limits.queue_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if item is _STOP:
                    stopping = True
                    continue
                version, signature_name, build = item
                try:
                    entry = build()
                    fill_metadata(entry, self.model, version, signature_name, self.config.sampling_rate)
                    self._write(entry.SerializeToString())
                    self._count(version, logged=1)
                    dirty = True
                except Exception as e:  # a full disk must not take the server down
                    self._count(version, dropped=1)
                    log.error("request log of model %s: writing failed: %s", self.model, e)
                    self._close_file()
            if dirty and (not batch or stopping or time.monotonic() - last_flush >= self.limits.flush_seconds):
                self._flush()
                dirty, last_flush = False, time.monotonic()
            if batch and not stopping:
                time.sleep(self.limits.batch_seconds)
        self._close_file()

    def _write(self, record: bytes) -> None:
        import tensorflow as tf

        if self._writer is None or self._file_bytes >= self.limits.max_file_bytes:
            self._close_file()
            prefix = self.config.filename_prefix
            os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
            self._seq += 1
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            path = f"{prefix}-{stamp}-{os.getpid()}-{self._seq:05d}{SUFFIX}"
            self._writer = tf.io.TFRecordWriter(path)
            self._file_bytes = 0
            self.files.append(path)
        self._writer.write(record)
        self._file_bytes += len(record) + 16  # TFRecord framing: length, two CRCs

    def _flush(self) -> None:
        self._call_writer("flush")

    def _close_file(self) -> None:
        self._call_writer("close")
        self._writer = None

    def _call_writer(self, method: str) -> None:
        """Flush or close the open file. A failure is logged, not raised: the writer thread must
        go on (the records are lost either way, the server must not be)."""
        if self._writer is not None:
            try:
                getattr(self._writer, method)()
            except Exception as e:
                log.error("request log of model %s: %s failed: %s", self.model, method, e)

    def close(self, timeout: float = 60.0) -> None:
        """Write what is queued, close the file. Requests arriving meanwhile are not logged."""
        self._closed = True
        deadline = time.monotonic() + timeout
        while self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.error("request log of model %s: writer did not finish within %.0f s", self.model, timeout)


class RequestLogs:
    """The request loggers of all configured models; what the server's handlers call."""

    def __init__(self, limits: LoggerLimits | None = None) -> None:
        self.limits = limits or LoggerLimits()
        self._loggers: dict[str, RequestLogger] = {}
        self._lock = threading.Lock()

    def configure(self, models: list[Any]) -> None:
        """Start, keep, replace or stop loggers to match the models' `logging` settings."""
        wanted = {m.name: m.logging for m in models if getattr(m, "logging", None) is not None}
        stale = []
        with self._lock:
            for name, logger in list(self._loggers.items()):
                if wanted.get(name) != logger.config:
                    stale.append(self._loggers.pop(name))
            for name, config in wanted.items():
                if name not in self._loggers:
                    self._loggers[name] = RequestLogger(name, config, self.limits)
                    log.info("model %s: logging %.3g of requests to %s*%s", name, config.sampling_rate,
                             config.filename_prefix, SUFFIX)
        for logger in stale:
            logger.close()

    def logger(self, name: str) -> RequestLogger | None:
        return self._loggers.get(name)

    def offer(self, model: Any, signature_name: str, build: Builder) -> None:
        """Called after a request succeeded; `model` is the LoadedVersion that answered it and
        `build` makes its PredictionLog (request and response) in the writer thread."""
        logger = self._loggers.get(model.name)
        if logger is not None:
            logger.offer(model.version, signature_name, build)

    def collect(self, metrics: Any) -> None:
        """Copy each model's written / dropped totals into request_log_count (at scrape time)."""
        with self._lock:
            loggers = list(self._loggers.values())
        for logger in loggers:
            total = logger.totals()
            metrics.request_log_count.set((logger.model, "OK"), total.logged)
            metrics.request_log_count.set((logger.model, "RESOURCE_EXHAUSTED"), total.dropped)

    def describe(self, name: str, version: int) -> str:
        """The status line for one version; empty when the model is not logged."""
        logger = self._loggers.get(name)
        if logger is None:
            return ""
        c = logger.counts(version)
        return (f"request log: {c.logged} records written, {c.dropped} dropped "
                f"(sampling rate {logger.config.sampling_rate:g})")

    def close(self) -> None:
        with self._lock:
            loggers, self._loggers = list(self._loggers.values()), {}
        for logger in loggers:
            logger.close()


def fill_metadata(entry: prediction_log_pb2.PredictionLog, model: str, version: int, signature_name: str,
                  rate: float) -> None:
    """The record's LogMetadata as TF Serving fills it: model spec, sampling, tags, time."""
    meta = entry.log_metadata
    meta.model_spec.name = model
    meta.model_spec.version.value = version
    if signature_name:
        meta.model_spec.signature_name = signature_name
    meta.sampling_config.sampling_rate = rate
    meta.saved_model_tags.append("serve")
    meta.timestamp_secs = int(time.time())


def log_files(directory: str) -> list[str]:
    """The request-log TFRecord files under `directory` (recursively), oldest name first."""
    return sorted(glob.glob(os.path.join(directory, "**", f"*{SUFFIX}"), recursive=True))


def read_logs(paths: list[str]) -> Iterator[prediction_log_pb2.PredictionLog]:
    """Every complete record of the files; a partly written last record (a crash) is skipped."""
    import tensorflow as tf

    for path in paths:
        try:
            for raw in tf.data.TFRecordDataset(path):
                yield prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        except tf.errors.DataLossError:
            log.warning("%s: ends with a partly written record (ignored)", path)
