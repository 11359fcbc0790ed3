"""TF Serving's monitoring metrics in Prometheus' text format (`--monitoring_config_file`).

Dashboards and alerts written for TF Serving scrape its metric names, labels and histogram
buckets, so those are copied here from TF Serving's (and TensorFlow's) source, each cited where it
is declared below. The text is written as tensorflow_serving/util/prometheus_exporter.cc writes it
(`GetPrometheusMetricName`: every character outside [a-zA-Z0-9_] becomes ':', so
"/tensorflow/serving/request_count" is scraped as ":tensorflow:serving:request_count";
`SerializeHistogram`: cumulative `_bucket{...,le="..."}` lines, the last one le="+Inf", then
`_sum` and `_count`; limits and sums printed as absl::StrCat prints a double, six significant
digits). Histograms are TensorFlow's monitoring::Sampler: a value v lands in the first bucket whose
limit is > v (std::upper_bound in tsl/lib/histogram/histogram.cc), and latencies are microseconds.

Recording is a dict lookup and an add under one lock per metric, so it is cheap enough to leave
on (BENCHMARKS.md, "Serving metrics"); with monitoring off the server records into `NO_METRICS`,
whose methods do nothing.
"""
from __future__ import annotations

import bisect
import threading
from typing import Callable, Iterable

# TF Serving's status label values are error::Code_Name(status.code()): the gRPC code names.
OK = "OK"

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath


def exponential_buckets(scale: float, growth: float, count: int) -> list[float]:
    """monitoring::Buckets::Exponential (tsl/lib/monitoring/sampler.cc ExponentialBuckets)."""
    return [scale * growth ** i for i in range(count)]


# Scale of 10, power of 1.8 with bucket count 33 (~20 minutes): util.cc request/runtime latency,
# saved_model_warmup_util.cc warm-up latency.
LATENCY_BUCKETS = exponential_buckets(10, 1.8, 33)
# batching_session.cc queuing_latency: scale of 100, power of 1.2 with bucket count 52 (~1 second).
QUEUING_BUCKETS = exponential_buckets(100, 1.2, 52)
# util.cc request_example_counts: [1, 2, 4, ..., 16 * 1024]; used for the batch sizes (see below).
SIZE_BUCKETS = exponential_buckets(1, 2, 15)


def _number(value: float) -> str:
    """A double as absl::StrCat writes it (six significant digits, %g style)."""
    return f"{value:.6g}"


def _escape(value: str) -> str:
    """prometheus_exporter.cc SanitizeLabelValue: backslash and double quote escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def prometheus_name(name: str) -> str:
    """prometheus_exporter.cc GetPrometheusMetricName."""
    out = "".join(c if c.isascii() and (c.isalnum() or c == "_") else ":" for c in name)
    return "_" + out if out[:1].isdigit() else out


class _Metric:
    def __init__(self, name: str, labels: tuple[str, ...]) -> None:
        self.name, self.labels = prometheus_name(name), labels
        self._lock = threading.Lock()

    def _label_text(self, values: tuple[str, ...]) -> str:
        return ",".join(f'{k}="{_escape(v)}"' for k, v in zip(self.labels, values))


class Counter(_Metric):
    """monitoring::Counter: a cumulative int64 per label set."""

    kind = "counter"

    def __init__(self, name: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, labels)
        self._cells: dict[tuple[str, ...], int] = {}

    def add(self, values: tuple[str, ...], amount: int = 1) -> None:
        with self._lock:
            self._cells[values] = self._cells.get(values, 0) + amount

    def set(self, values: tuple[str, ...], amount: int) -> None:
        """For totals kept elsewhere (request-log counts), copied in at scrape time."""
        with self._lock:
            self._cells[values] = amount

    def lines(self) -> list[str]:
        with self._lock:
            cells = sorted(self._cells.items())
        return [f"# TYPE {self.name} counter"] + [f"{self.name}{{{self._label_text(k)}}} {int(v)}" for k, v in cells]


class Histogram(_Metric):
    """monitoring::Sampler with explicit bucket limits; +Inf is the last bucket."""

    def __init__(self, name: str, labels: tuple[str, ...], limits: list[float]) -> None:
        super().__init__(name, labels)
        self.limits = limits
        self._cells: dict[tuple[str, ...], list] = {}  # values -> [bucket counts..., sum]

    def observe(self, values: tuple[str, ...], value: float) -> None:
        index = bisect.bisect_right(self.limits, value)
        with self._lock:
            cell = self._cells.get(values)
            if cell is None:
                cell = self._cells[values] = [0] * (len(self.limits) + 1) + [0.0]
            cell[index] += 1
            cell[-1] += value

    def lines(self) -> list[str]:
        with self._lock:
            cells = sorted((k, list(v)) for k, v in self._cells.items())
        out = [f"# TYPE {self.name} histogram"]
        for values, cell in cells:
            labels = self._label_text(values)
            prefix = f"{self.name}_bucket{{{labels}{',' if labels else ''}"
            total = 0
            for i, count in enumerate(cell[:-1]):
                total += count
                limit = _number(self.limits[i]) if i < len(self.limits) else "+Inf"
                out.append(f'{prefix}le="{limit}"}} {total}')
            out.append(f"{self.name}_sum{{{labels}}} {_number(cell[-1])}")
            out.append(f"{self.name}_count{{{labels}}} {total}")
        return out


class Metrics:
    """The server's metrics, named and labelled as TF Serving's; `render` is the scrape page."""

    def __init__(self) -> None:
        # tensorflow_serving/servables/tensorflow/util.cc: RecordModelRequestCount, RecordRequestLatency,
        # RecordRuntimeLatency (called by prediction_service_impl.cc with entrypoint "GRPC", by
        # http_rest_api_handler.cc with "REST"; runtime "TF1" for a Session-based SavedModel).
        self.request_count = Counter("/tensorflow/serving/request_count", ("model_name", "status"))
        self.request_latency = Histogram("/tensorflow/serving/request_latency",
                                         ("model_name", "API", "entrypoint", "status"), LATENCY_BUCKETS)
        self.runtime_latency = Histogram("/tensorflow/serving/runtime_latency", ("model_name", "API", "runtime"),
                                         LATENCY_BUCKETS)
        # tensorflow/cc/saved_model/loader.cc: load_attempt_count (status "success" / "fail") and
        # load_latency (a counter of microseconds, successful loads only), by model_path.
        self.load_attempt_count = Counter("/tensorflow/cc/saved_model/load_attempt_count", ("model_path", "status"))
        self.load_latency = Counter("/tensorflow/cc/saved_model/load_latency", ("model_path",))
        # tensorflow_serving/servables/tensorflow/saved_model_warmup_util.cc: model_warmup_latency.
        self.warmup_latency = Histogram("/tensorflow/serving/model_warmup_latency", ("model_path", "status"),
                                        LATENCY_BUCKETS)
        # tensorflow_serving/batching/batching_session.cc: queuing_latency by thread_pool_name and
        # wrapped_run_count (model calls made by the batcher). input_batch_size / processed_batch_size
        # are PercentileSamplers there (batching_util.cc), which prometheus_exporter.cc cannot write as
        # histograms; here they are histograms on SIZE_BUCKETS, so a dashboard can read them.
        self.queuing_latency = Histogram("/tensorflow/serving/batching_session/queuing_latency",
                                         ("thread_pool_name",), QUEUING_BUCKETS)
        self.wrapped_run_count = Counter("/tensorflow/serving/batching_session/wrapped_run_count")
        self.input_batch_size = Histogram("/tensorflow/serving/batching_session/input_batch_size", (),
                                          SIZE_BUCKETS)
        self.processed_batch_size = Histogram("/tensorflow/serving/batching_session/processed_batch_size", (),
                                              SIZE_BUCKETS)
        # tensorflow_serving/core/request_logger.cc: request_log_count by model_name and status_code
        # (OK = written; a record dropped because the writer's queue was full: RESOURCE_EXHAUSTED).
        self.request_log_count = Counter("/tensorflow/serving/request_log_count", ("model_name", "status_code"))
        self._collectors: list[Callable[["Metrics"], None]] = []

    # --- recording -------------------------------------------------------------------------------
    def request(self, model: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        self.request_count.add((model, status))
        self.request_latency.observe((model, api, entrypoint, status), seconds * 1e6)

    def runtime(self, model: str, api: str, seconds: float) -> None:
        self.runtime_latency.observe((model, api, "TF1"), seconds * 1e6)

    def load(self, model_path: str, ok: bool, seconds: float) -> None:
        self.load_attempt_count.add((model_path, "success" if ok else "fail"))
        if ok:
            self.load_latency.add((model_path,), int(seconds * 1e6))

    def warmup(self, model_path: str, status: str, seconds: float) -> None:
        self.warmup_latency.observe((model_path, status), seconds * 1e6)

    def batch(self, thread_pool_name: str, sizes: list[int], queued_seconds: list[float],
              processed: int | None = None) -> None:
        """One model call made by the batcher for requests of `sizes` rows that waited `queued_seconds`;
        `processed` is the batch's size after allowed_batch_sizes padding (MergeInputTensors records
        the padded size as processed_batch_size), the sum of `sizes` when not given."""
        self.wrapped_run_count.add(())
        self.processed_batch_size.observe((), sum(sizes) if processed is None else processed)
        for size, waited in zip(sizes, queued_seconds):
            self.input_batch_size.observe((), size)
            self.queuing_latency.observe((thread_pool_name,), waited * 1e6)

    def add_collector(self, collect: Callable[["Metrics"], None]) -> None:
        """`collect(metrics)` runs at every scrape, for totals another component keeps itself."""
        self._collectors.append(collect)

    # --- scraping --------------------------------------------------------------------------------
    def families(self) -> Iterable[_Metric]:
        return [m for m in vars(self).values() if isinstance(m, _Metric)]

    def render(self) -> str:
        """The page prometheus_exporter.cc GeneratePage writes: only metrics with a value."""
        for collect in self._collectors:
            collect(self)
        lines: list[str] = []
        for family in self.families():
            body = family.lines()
            if len(body) > 1:
                lines += body
        return "\n".join(lines) + "\n"


class NoMetrics(Metrics):
    """Monitoring off: the same calls, nothing recorded (the cost measured as 'off')."""

    def request(self, *args: object) -> None:
        pass

    def runtime(self, *args: object) -> None:
        pass

    def load(self, *args: object) -> None:
        pass

    def warmup(self, *args: object) -> None:
        pass

    def batch(self, *args: object) -> None:
        pass

    def add_collector(self, collect: Callable[[Metrics], None]) -> None:
        pass


NO_METRICS = NoMetrics()
