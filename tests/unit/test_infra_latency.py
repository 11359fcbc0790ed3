"""The InfraValidator's latency figures (components/infra_validator.py, measure_latency): the warm
calls are left out and p50/p99 are the percentiles of the measured calls, computed here by hand
on a clock the test controls (a fake stub advances it by each call's latency)."""
from __future__ import annotations

import types

import pytest

from components import infra_validator

WARM = 5   # calls measure_latency makes before it starts timing


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default), written out."""
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def test_p50_and_p99_of_the_timed_calls_only(monkeypatch):
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    # Warm-up calls are slow (first-call cost), then 1..100 ms in a scrambled order.
    timed = [float((i * 37) % 100 + 1) for i in range(100)]
    latencies = iter([5000.0] * WARM + timed)
    clock = types.SimpleNamespace(now=0.0)
    calls = []

    class FakeStub:
        def __init__(self, channel):
            pass

        def Predict(self, request, timeout):
            calls.append(request.model_spec.signature_name)
            clock.now += next(latencies) / 1000

    monkeypatch.setattr(prediction_service_pb2_grpc, "PredictionServiceStub", FakeStub)
    monkeypatch.setattr(infra_validator, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    requests = [predict_pb2.PredictRequest(), predict_pb2.PredictRequest()]
    requests[0].model_spec.signature_name, requests[1].model_spec.signature_name = "a", "b"

    p50, p99 = infra_validator.measure_latency("localhost:1", requests, count=len(timed))
    assert len(calls) == WARM + len(timed) and calls[:4] == ["a", "b", "a", "b"]   # the requests in turn
    assert p50 == pytest.approx(_percentile(timed, 50)) and p50 == pytest.approx(50.5)
    assert p99 == pytest.approx(_percentile(timed, 99)) and p99 == pytest.approx(99.01)
