"""serving/metrics.py against TF Serving's own exporter tests
(tensorflow_serving/util/prometheus_exporter_test.cc) and its MonitoringConfig parsing."""
import pytest

from serving.config import ConfigError, parse_monitoring_config
from serving.metrics import Counter, Histogram, Metrics, exponential_buckets


def test_counter_page():
    """PrometheusExporterTest.Counter and SanitizeMetricName / SanitizeLabelValue."""
    counter = Counter("/test/path/total", ("name",))
    counter.add(("abc",), 2)
    assert counter.lines() == ["# TYPE :test:path:total counter", ':test:path:total{name="abc"} 2']
    odd = Counter("0/path-total_count", ("name",))
    odd.add(('"abc\\"',), 2)
    assert odd.lines()[1] == '_0:path:total_count{name="\\"abc\\\\\\""} 2'


def test_histogram_page():
    """PrometheusExporterTest.Histogram, line for line: Exponential(1, 2, 10), values 2, 20, 200."""
    histogram = Histogram("/test/path/histogram", ("status",), exponential_buckets(1, 2, 10))
    for value in (2, 20, 200):
        histogram.observe(("good",), value)
    counts = [0, 0, 1, 1, 1, 2, 2, 2, 3, 3]
    expected = ["# TYPE :test:path:histogram histogram"]
    expected += [f':test:path:histogram_bucket{{status="good",le="{2 ** i}"}} {c}' for i, c in enumerate(counts)]
    expected += [':test:path:histogram_bucket{status="good",le="+Inf"} 3',
                 ':test:path:histogram_sum{status="good"} 222', ':test:path:histogram_count{status="good"} 3']
    assert histogram.lines() == expected


def test_latency_buckets_are_tf_servings():
    """util.cc: Exponential(10, 1.8, 33), printed with six significant digits as absl::StrCat does."""
    metrics = Metrics()
    metrics.request("m", "Predict", "GRPC", "OK", 0.001)  # 1000 us
    page = metrics.render()
    assert ':tensorflow:serving:request_count{model_name="m",status="OK"} 1' in page
    buckets = [line for line in page.splitlines() if line.startswith(":tensorflow:serving:request_latency_bucket")]
    assert len(buckets) == 34 and 'le="10"' in buckets[0] and 'le="32.4"' in buckets[2] and 'le="+Inf"' in buckets[-1]
    assert ':tensorflow:serving:request_latency_count{model_name="m",API="Predict",entrypoint="GRPC",status="OK"} 1' \
        in page
    assert ":tensorflow:serving:runtime_latency" not in page  # only metrics with a value are written


def test_monitoring_config():
    """MonitoringConfig text proto as tensorflow_model_server reads it; default path when empty."""
    assert parse_monitoring_config('prometheus_config { enable: true, path: "/m/p" }') == "/m/p"
    assert parse_monitoring_config("prometheus_config { enable: true }") == "/monitoring/prometheus/metrics"
    assert parse_monitoring_config("prometheus_config { path: '/x' }") is None
    with pytest.raises(ConfigError, match="Error parsing text-format tensorflow.serving.MonitoringConfig"):
        parse_monitoring_config("prometheus { enable: true }")
