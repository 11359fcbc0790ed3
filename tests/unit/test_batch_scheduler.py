"""serving/batching.py's scheduler against TF Serving's semantics, with a NumPy stand-in for the
model (no TensorFlow): defaults when a field is absent, the parameter checks and their texts, the
queue-full and task-too-large errors, padding, splitting, the batch thread pool.

Each model call of the stand-in records the rows it got; calls that must overlap block on events
the test sets, and every wait is bounded (wait_until), so nothing depends on timing."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import wait_until
from serving.batching import Batchers, BatchingConfigError, BatchingParameters, max_parallelism
from serving.config import ConfigError, parse_batching_parameters
from serving.errors import InvalidArgument, Unavailable


class Model:
    """y = 2x + 1 row by row; records each call's input shape; can be held inside a call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []
        self.inside = threading.Semaphore(0)  # released when a call starts
        self.gate: threading.Event | None = None

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds["x"]
        self.calls.append(x.shape)
        self.inside.release()
        if self.gate is not None:
            assert self.gate.wait(60)
        return {"y": 2 * x + 1}


def call_in_thread(batchers: Batchers, model: Model, x: np.ndarray, results: dict, key: object) -> threading.Thread:
    def go() -> None:
        try:
            results[key] = batchers.run(("m", 1, "sig", ("y",)), model, {"x": x})["y"]
        except Exception as e:  # checked by the test
            results[key] = e
    t = threading.Thread(target=go)
    t.start()
    return t


def test_defaults_are_tf_servings():
    """SharedBatchScheduler::QueueOptions / ::Options defaults; a file without a field keeps it."""
    p = parse_batching_parameters("")
    assert (p.max_batch_size, p.batch_timeout_micros, p.max_enqueued_batches) == (1000, 0, 10)
    assert p.num_batch_threads == max_parallelism() and p.thread_pool_name == "batch_threads"
    assert p.allowed_batch_sizes == () and not p.pad_variable_length_inputs and not p.enable_large_batch_splitting
    p = parse_batching_parameters("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
                                  "max_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 8 }\n")
    assert (p.max_batch_size, p.max_enqueued_batches, p.num_batch_threads) == (128, 1000000, 8)
    p = parse_batching_parameters("max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 8 "
                                  "pad_variable_length_inputs: true thread_pool_name { value: 'p' }")
    assert p.allowed_batch_sizes == (2, 8) and p.pad_variable_length_inputs and p.thread_pool_name == "p"
    # AddQueue rewrites max_enqueued_batches 0 to 1 unless large batches are split
    assert parse_batching_parameters("max_enqueued_batches { value: 0 }").queue_length == 1


@pytest.mark.parametrize("text, message", [
    ("num_batch_threads { value: 0 }", "num_batch_threads must be positive; was 0"),
    ("max_batch_size { value: 0 }", "input_batch_size_limit must be positive; was 0"),
    ("batch_timeout_micros { value: -1 }", "batch_timeout_micros must be non-negative; was -1"),
    ("max_batch_size { value: 16 } allowed_batch_sizes: 4 allowed_batch_sizes: 8",
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 8; expected 16"),
    ("allowed_batch_sizes: 4", "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; "
                               "expected 1000"),
    ("enable_large_batch_splitting { value: true } max_enqueued_batches { value: 0 }",
     "max_enqueued_batches must be positive; was 0"),
])
def test_refused_parameters_have_tf_servings_text(text, message):
    with pytest.raises(ConfigError) as e:
        parse_batching_parameters(text, "b.config")
    assert str(e.value) == f"b.config: {message}"
    with pytest.raises(BatchingConfigError):
        BatchingParameters(**{"num_batch_threads": 0}).validate()


def test_concurrent_requests_each_get_their_own_rows_in_shared_batches():
    """One batch thread held inside a call: 12 requests queue up, then run as batches of up to
    max_batch_size; each caller gets exactly its rows."""
    model, results = Model(), {}
    model.gate = threading.Event()
    batchers = Batchers(BatchingParameters(max_batch_size=8, num_batch_threads=1, max_enqueued_batches=100), )
    try:
        threads = [call_in_thread(batchers, model, np.full((1, 3), -1.0), results, "first")]
        assert model.inside.acquire(timeout=60)  # the thread is busy with the first request
        for i in range(12):
            threads.append(call_in_thread(batchers, model, np.full((1, 3), float(i)), results, i))
        wait_until(lambda: sum(len(b.tasks) for b in batchers.scheduler._queues[0].batches) == 12,
                   "12 tasks queued", 60)
        model.gate.set()
        for t in threads:
            t.join(60)
    finally:
        batchers.close()
    for i in range(12):
        np.testing.assert_array_equal(results[i], np.full((1, 3), 2.0 * i + 1))
    assert sorted(shape[0] for shape in model.calls) == [1, 4, 8]  # 1 alone, then 8 + 4 (FIFO batches)


def test_full_queue_is_unavailable_with_tf_servings_text_and_answers_stay_right():
    """max_enqueued_batches 2, one thread held: a task that fits no batch of a full queue is refused
    (ValidateBatchTaskQueueCapacity's text); the accepted ones are all answered, each its own."""
    model, results = Model(), {}
    model.gate = threading.Event()
    batchers = Batchers(BatchingParameters(max_batch_size=2, num_batch_threads=1, max_enqueued_batches=2))
    try:
        threads = [call_in_thread(batchers, model, np.zeros((2, 1)), results, "running")]
        assert model.inside.acquire(timeout=60)
        for i in range(4):  # 2 batches of 2 rows: the queue is full
            threads.append(call_in_thread(batchers, model, np.full((1, 1), float(i)), results, i))
        wait_until(lambda: sum(len(b.tasks) for b in batchers.scheduler._queues[0].batches) == 4, "4 queued", 60)
        with pytest.raises(Unavailable) as e:
            batchers.run(("m", 1, "sig", ("y",)), model, {"x": np.full((1, 1), 9.0)})
        assert e.value.message == ("The batch scheduling queue to which this task was submitted is full; "
                                   "currently 2 batches enqueued and max_enqueued_batches is 2")
        model.gate.set()
        for t in threads:
            t.join(60)
        np.testing.assert_array_equal(results["running"], np.ones((2, 1)))
        for i in range(4):
            np.testing.assert_array_equal(results[i], np.full((1, 1), 2.0 * i + 1))
        # still serving
        np.testing.assert_array_equal(batchers.run(("m", 1, "sig", ("y",)), model, {"x": np.ones((1, 1))})["y"],
                                      np.full((1, 1), 3.0))
    finally:
        batchers.close()


def test_task_over_max_batch_size_is_invalid_argument_unless_split():
    model = Model()
    batchers = Batchers(BatchingParameters(max_batch_size=4, num_batch_threads=1))
    try:
        with pytest.raises(InvalidArgument) as e:
            batchers.run(("m", 1, "s", ("y",)), model, {"x": np.zeros((5, 2))})
        assert e.value.message == "Task size 5 is larger than maximum input batch size 4"
    finally:
        batchers.close()
    batchers = Batchers(BatchingParameters(max_batch_size=16, max_execution_batch_size=4, num_batch_threads=1,
                                           enable_large_batch_splitting=True))
    try:
        x = np.arange(22, dtype=np.float64).reshape(11, 2)
        np.testing.assert_array_equal(batchers.run(("m", 1, "s", ("y",)), model, {"x": x})["y"], 2 * x + 1)
        assert max(shape[0] for shape in model.calls) <= 4 and sum(shape[0] for shape in model.calls) == 11
        with pytest.raises(InvalidArgument):
            batchers.run(("m", 1, "s", ("y",)), model, {"x": np.zeros((17, 2))})
    finally:
        batchers.close()


def test_allowed_batch_sizes_pad_with_the_last_tasks_first_row():
    model, results = Model(), {}
    model.gate = threading.Event()
    batchers = Batchers(BatchingParameters(max_batch_size=8, allowed_batch_sizes=(2, 4, 8), num_batch_threads=1))
    try:
        threads = [call_in_thread(batchers, model, np.zeros((1, 2)), results, "running")]
        assert model.inside.acquire(timeout=60)
        for i in range(3):
            threads.append(call_in_thread(batchers, model, np.full((1, 2), float(i + 1)), results, i))
        wait_until(lambda: sum(len(b.tasks) for b in batchers.scheduler._queues[0].batches) == 3, "3 queued", 60)
        model.gate.set()
        for t in threads:
            t.join(60)
    finally:
        batchers.close()
    assert [shape[0] for shape in model.calls] == [2, 4]  # 1 padded to 2, 3 padded to 4
    for i in range(3):
        np.testing.assert_array_equal(results[i], np.full((1, 2), 2.0 * (i + 1) + 1))


def test_variable_length_inputs_padded_with_first_element_or_batched_apart():
    for pad in (True, False):
        model, results = Model(), {}
        model.gate = threading.Event()
        batchers = Batchers(BatchingParameters(max_batch_size=8, num_batch_threads=1, pad_variable_length_inputs=pad))
        try:
            threads = [call_in_thread(batchers, model, np.zeros((1, 1)), results, "running")]
            assert model.inside.acquire(timeout=60)
            threads.append(call_in_thread(batchers, model, np.array([[5.0, 6.0, 7.0]]), results, "long"))
            wait_until(lambda: batchers.scheduler._queues[0].batches[-1].rows == 1, "long queued", 60)
            threads.append(call_in_thread(batchers, model, np.array([[1.0]]), results, "short"))
            wait_until(lambda: sum(len(b.tasks) for b in batchers.scheduler._queues[0].batches) == 2, "2 queued", 60)
            model.gate.set()
            for t in threads:
                t.join(60)
        finally:
            batchers.close()
        np.testing.assert_array_equal(results["long"], [[11.0, 13.0, 15.0]])
        if pad:  # one call of 2 rows x 3, the short row padded with its first element
            assert model.calls[1:] == [(2, 3)]
            np.testing.assert_array_equal(results["short"], [[3.0, 3.0, 3.0]])
        else:  # TF Serving would fail both (FAILED_PRECONDITION); here each shape has its own batch
            assert sorted(model.calls[1:]) == [(1, 1), (1, 3)]
            np.testing.assert_array_equal(results["short"], [[3.0]])


def test_timeout_holds_an_open_batch_until_it_is_full_or_due():
    """batch_timeout_micros 60 s: a lone task waits; a second one fills the batch (max 2), which
    then runs at once -- the timeout is an upper bound, not a wait every batch pays."""
    model, results = Model(), {}
    batchers = Batchers(BatchingParameters(max_batch_size=2, batch_timeout_micros=60_000_000, num_batch_threads=2))
    try:
        first = call_in_thread(batchers, model, np.ones((1, 1)), results, "a")
        wait_until(lambda: batchers.scheduler._queues and batchers.scheduler._queues[0].batches[-1].rows == 1,
                   "a queued", 60)
        assert "a" not in results and not model.calls
        second = call_in_thread(batchers, model, np.full((1, 1), 2.0), results, "b")
        first.join(60)
        second.join(60)
        assert model.calls == [(2, 1)]
        np.testing.assert_array_equal(results["a"], [[3.0]])
        np.testing.assert_array_equal(results["b"], [[5.0]])
    finally:
        batchers.close()


def test_a_failing_batch_is_retried_request_by_request():
    def model(feeds):
        if (feeds["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": feeds["x"] + 1}
    gate, started = threading.Event(), threading.Semaphore(0)

    def held(feeds):
        started.release()
        assert gate.wait(60)
        return model(feeds)
    batchers = Batchers(BatchingParameters(max_batch_size=8, num_batch_threads=1))
    results: dict = {}
    key = ("m", 1, "s", ("y",))
    try:
        first = threading.Thread(target=lambda: batchers.run(key, held, {"x": np.zeros((1, 1))}))
        first.start()
        assert started.acquire(timeout=60)
        threads = []
        for name, value in (("good", 1.0), ("bad", -1.0)):
            def go(name=name, value=value):
                try:
                    results[name] = batchers.run(key, model, {"x": np.full((1, 1), value)})["y"]
                except ValueError as e:
                    results[name] = e
            threads.append(threading.Thread(target=go))
            threads[-1].start()
        wait_until(lambda: sum(len(b.tasks) for b in batchers.scheduler._queues[0].batches) == 2, "2 queued", 60)
        gate.set()
        for t in [first, *threads]:
            t.join(60)
    finally:
        batchers.close()
    np.testing.assert_array_equal(results["good"], [[2.0]])
    assert isinstance(results["bad"], ValueError)


def test_a_lone_request_with_a_free_slot_runs_at_once_on_its_own_thread():
    """Timeout 0, nothing queued, a slot free: the batch a free batch thread would take now is
    run by the caller itself (no thread switch); with the slots busy it is queued for a batch thread."""
    names: list[str] = []

    def model(feeds):
        names.append(threading.current_thread().name)
        return {"y": feeds["x"] + 1}
    batchers = Batchers(BatchingParameters(num_batch_threads=1, thread_pool_name="pool"))
    try:
        np.testing.assert_array_equal(batchers.run(("m", 1, "s", ("y",)), model, {"x": np.ones((1, 1))})["y"], [[2.0]])
        assert names == [threading.current_thread().name]
    finally:
        batchers.close()


def test_command_line_batching_as_tensorflow_model_server(tmp_path):
    """server.cc: --enable_batching without a file = every default, pool "model_server_batch_threads";
    a parameters file without --enable_batching is refused with its text."""
    import argparse

    from serving.cli import add_serve_arguments, batching_from_args

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    params = batching_from_args(parser.parse_args(["--enable_batching"]))
    assert params == BatchingParameters(thread_pool_name="model_server_batch_threads")
    config = tmp_path / "b.config"
    config.write_text("max_batch_size { value: 32 } num_batch_threads { value: 1 }")
    params = batching_from_args(parser.parse_args(["--enable_batching", f"--batching_parameters_file={config}",
                                                   "--batch-timeout-micros=500"]))
    assert (params.max_batch_size, params.num_batch_threads, params.batch_timeout_micros) == (32, 1, 500)
    assert params.thread_pool_name == "batch_threads"
    with pytest.raises(ConfigError) as e:
        batching_from_args(parser.parse_args([f"--batching_parameters_file={config}"]))
    assert str(e.value) == ("server_options.batching_parameters_file is set without setting "
                            "server_options.enable_batching to true.")
    assert parser.parse_args(["--grpc_max_threads=64"]).grpc_max_threads == 64
