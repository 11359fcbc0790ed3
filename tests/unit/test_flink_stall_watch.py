"""benchmarks/scale.py FlinkStallWatch against a stand-in of the three Flink REST calls it makes.

The calls are Flink 1.19's REST API, as its own message headers declare them (flink-dist-1.19.3:
org.apache.flink.runtime.rest.messages.JobsOverviewHeaders GET "/jobs/overview",
job.JobDetailsHeaders GET "/jobs/:jobid", JobCancellationHeaders PATCH "/jobs/:jobid" with the
`mode` query parameter); the stand-in answers them on 127.0.0.1 for one RUNNING job. The
watched process is real: an idle `sleep` must get the job cancelled (what a deadlocked Beam job
looks like, BENCHMARKS.md "Beam on Flink"), a process burning a core must not.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from benchmarks.scale import FlinkStallWatch

JOB = {"jid": "a" * 32, "name": "BeamApp-test", "state": "RUNNING", "duration": 600_000}


class FlinkRest(BaseHTTPRequestHandler):
    cancelled: list[str] = []

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/jobs/overview":
            self._json({"jobs": [JOB]})
        elif self.path == f"/jobs/{JOB['jid']}":
            self._json({"jid": JOB["jid"], "vertices": [{"name": "CHAIN MapPartition (decode)", "status": "RUNNING"},
                                                        {"name": "DataSink", "status": "FINISHED"}]})
        else:
            self.send_error(404)

    def do_PATCH(self) -> None:  # noqa: N802
        self.cancelled.append(self.path)
        self._json({})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def rest():
    FlinkRest.cancelled = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlinkRest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def watch_for(rest: str, command: list[str], seconds: float) -> FlinkStallWatch:
    process = subprocess.Popen(command)
    try:
        watch = FlinkStallWatch([psutil.Process(process.pid)], rest, stall_seconds=1.5, interval=0.25)
        with watch:
            deadline = time.monotonic() + seconds
            while watch.stalled is None and time.monotonic() < deadline:
                time.sleep(0.1)
        return watch
    finally:
        process.kill()
        process.wait()


def test_an_idle_job_is_cancelled_and_its_running_tasks_named(rest):
    watch = watch_for(rest, ["sleep", "30"], seconds=10)
    assert watch.stalled is not None, "the watch did not see an idle job as stalled within 10 s"
    assert "BeamApp-test stalled" in watch.stalled and "CHAIN MapPartition (decode)" in watch.stalled
    assert "DataSink" not in watch.stalled          # finished tasks are not named
    assert FlinkRest.cancelled == [f"/jobs/{JOB['jid']}?mode=cancel"]


def test_a_job_whose_workers_use_the_cpu_is_left_running(rest):
    watch = watch_for(rest, [sys.executable, "-c", "while True: pass"], seconds=4)
    assert watch.stalled is None
    assert FlinkRest.cancelled == []
