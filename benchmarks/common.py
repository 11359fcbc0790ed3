"""What several benchmarks share: the newest pushed model, latency and throughput loops, a model
server started in its own process, medians of rounds and the JSON result file.

Benchmarks run from the checkout (`tools/with-stack python benchmarks/NAME.py`, PYTHONPATH is the
checkout), so they import this as `benchmarks.common`.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from serving.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SERVING = ROOT / "outputs" / "sample" / "serving" / "fmnist"


def data_pipeline(config: Any) -> Any:
    """The data stages alone, ExampleGen to Transform (pipeline/pipeline.py's builders), as a pipeline
    recording into config's metadata: what the Beam, scale and distributed-training benchmarks run."""
    from pipeline.pipeline import assemble, data_stages
    from pipeline.runner import metadata_config

    return assemble(config, data_stages(config), metadata_connection_config=metadata_config(config.metadata_path))


def latest_model(base: Path = SAMPLE_SERVING) -> Path:
    """The newest version directory TF Serving would load under `base` (serving/versions.py's rule)."""
    from serving.versions import list_versions

    versions = list_versions(str(base))
    if not versions:
        raise SystemExit(f"no model version under {base}; run `make run` first (or pass --model-dir)")
    return Path(versions[max(versions)])


def served_copy(model_dir: str | None, name: str) -> tuple[Path, Path, Path]:
    """(model version dir, scratch dir, <scratch>/fmnist base) with the version copied as `1/`.

    The model is --model-dir, or the newest sample push."""
    import shutil
    import tempfile

    model = Path(model_dir) if model_dir else latest_model()
    work = Path(tempfile.mkdtemp(prefix=f"fmnist-{name}-bench-"))
    base = work / "fmnist"
    shutil.copytree(model, base / "1")
    return model, work, base


def latency(call: Callable[[], Any], n: int) -> tuple[float, float]:
    """(p50, p99) in ms of n sequential calls."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1000, times[int(len(times) * 0.99) - 1] * 1000


def throughput(make_call: Callable[[], Callable[[], Any]], batch: int, clients: int, seconds: float) -> float:
    """Images per second answered by `clients` threads calling for `seconds`."""
    stop = threading.Event()
    counts = [0] * clients

    def worker(i: int) -> None:
        call = make_call()
        while not stop.is_set():
            call()
            counts[i] += batch

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


# `fmnist serve` of this checkout: the server as the project deploys it (schema/contract.py's
# thread flag when no thread flag is given); `python -m serving` is the generic server.
FMNIST_SERVE = (str(ROOT / "tools" / "bin" / "fmnist"), "serve")
GENERIC_SERVE = ("-m", "serving")


def launch_model_server(flags: list[str], command: tuple[str, ...] = GENERIC_SERVE,
                        output: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`python -m serving FLAGS` (or `fmnist serve FLAGS`) on a free loopback port, started (not yet
    ready); its stdout and stderr go to `output` (e.g. for SIGUSR1's thread stacks), else nowhere."""
    port = free_port()
    cmd = [sys.executable, *command, f"--port={port}", "--rest_api_port=0", *flags]
    if output is None:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        with open(output, "w") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"127.0.0.1:{port}"


def wait_until_ready(proc: subprocess.Popen, target: str, ready: Callable[[Any], bool],
                     timeout: float = 300.0) -> None:
    """Returns once `ready(client)` is true for a serving.client.ServingClient on `target`.

    `ready` may raise while the server is still coming up; the wait is bounded by `timeout` and
    ends early when the process exits.
    """
    from serving.client import ServingClient

    client = ServingClient(target, timeout=5)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if ready(client):
                    return
            except Exception:  # not up yet: connection refused, model still loading
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit(f"server did not come up: {' '.join(map(str, proc.args))}")
            time.sleep(0.3)
    finally:
        client.close()


def start_model_server(flags: list[str], ready: Callable[[Any], bool], timeout: float = 300.0
                       ) -> tuple[subprocess.Popen, str]:
    """launch_model_server, then wait_until_ready."""
    proc, target = launch_model_server(flags)
    wait_until_ready(proc, target, ready, timeout)
    return proc, target


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (not its children)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def stop(proc: subprocess.Popen | None) -> None:
    if proc:
        proc.terminate()
        proc.wait(timeout=60)


def medians(rounds: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """{mode: {figure: median over the rounds}}."""
    return {mode: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for mode, runs in rounds.items()}


def print_round(label: str, figures: dict[str, float], digits: int = 3) -> None:
    print(f"{label}: {json.dumps({k: round(v, digits) for k, v in figures.items()})}", file=sys.stderr, flush=True)


def write_result(path: str | Path, result: Any, echo: bool = True) -> None:
    """The benchmark's JSON result file (directories created); echoed to stdout unless told not to."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    if echo:
        print(json.dumps(result, indent=1))
