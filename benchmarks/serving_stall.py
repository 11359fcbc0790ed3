"""Rounds of the SIGTERM-drain test's traffic against fresh `fmnist serve --batching` processes,
optionally with busy loops competing for the CPUs: how often a model call stalls.

    tools/with-stack python benchmarks/serving_stall.py --rounds 40 --busy-loops 2

Each round starts a server on the newest model under --model-base, six clients send 64 test
images each, one request after another; once every client has had an answer the server gets
SIGTERM. A round is "stalled" when a client's request outlives --deadline (DEADLINE_EXCEEDED):
the server's output with its thread stacks (SIGUSR1) is then kept in --stacks-dir. The figures behind
RELIABILITY.md, "A model call that stalls under CPU contention".
"""
from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from benchmarks import common

log = logging.getLogger("serving_stall")
CLIENTS, IMAGES = 6, 64


def busy_loops(n: int) -> list[subprocess.Popen]:
    """n processes that only spin: other work competing for the CPUs."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def one_round(model_base: Path, images: np.ndarray, deadline: float, server_args: list[str],
              server_log: Path) -> dict:
    from serving.client import ServingClient

    proc, target = common.launch_model_server(  # its output keeps its stacks if the round stalls
        ["--model-base", str(model_base), "--batching", "--grace", "600", *server_args],
        common.FMNIST_SERVE, output=server_log)
    common.wait_until_ready(proc, target, lambda c: bool(c.status().model_version_status))
    client = ServingClient(target, timeout=deadline)
    codes: list[grpc.StatusCode] = []
    answered, lock = set(), threading.Lock()
    all_answered = threading.Event()

    def calls(k: int) -> None:
        mine = images[k * IMAGES:(k + 1) * IMAGES]
        for _ in range(100_000):  # ends at the first error: once the server stops, or a stall
            try:
                client.predict_images(mine)
            except grpc.RpcError as e:
                codes.append(e.code())
                return
            with lock:
                answered.add(k)
                if len(answered) == CLIENTS:
                    all_answered.set()

    threads = [threading.Thread(target=calls, args=(k,), daemon=True) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    all_answered.wait(timeout=deadline)
    stalled = not all_answered.is_set()
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=deadline + 5)
    stalled = stalled or grpc.StatusCode.DEADLINE_EXCEEDED in codes
    if stalled and proc.poll() is None:
        proc.send_signal(signal.SIGUSR1)  # written to the server's stderr (its log)
        time.sleep(3)
    proc.kill()
    proc.wait()
    client.close()
    return {"stalled": stalled, "codes": sorted(c.name for c in codes)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-base", type=Path, default=common.SAMPLE_SERVING.parent,
                   help="a model base holding fmnist/<version> (default: the sample run's)")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--busy-loops", type=int, default=2, help="spinning processes during the rounds")
    p.add_argument("--deadline", type=float, default=40.0, help="client deadline, s: a longer call is a stall")
    p.add_argument("--stacks-dir", type=Path, default=common.ROOT / "outputs" / "serving_stall",
                   help="where a stalled round's server output (with its thread stacks) is kept")
    p.add_argument("server_args", nargs="*", help="more `fmnist serve` flags, after --")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import served_traffic  # tests/: the committed sample's test images, as the drain test sends

    _, images = served_traffic.test_images(limit=CLIENTS * IMAGES)
    args.stacks_dir.mkdir(parents=True, exist_ok=True)
    loops = busy_loops(args.busy_loops)
    stalls = 0
    try:
        for i in range(1, args.rounds + 1):
            server_log = args.stacks_dir / f"server-{i}.log"
            result = one_round(args.model_base, images, args.deadline, args.server_args, server_log)
            if not result["stalled"]:
                server_log.unlink()
            stalls += result["stalled"]
            log.info("round %d/%d: %s, clients ended on %s", i, args.rounds,
                     "STALLED" if result["stalled"] else "drained", result["codes"])
    finally:
        for loop in loops:
            loop.kill()
    log.info("%d of %d rounds stalled (busy loops: %d, server flags: %s)", stalls, args.rounds,
             args.busy_loops, args.server_args or "fmnist serve's defaults")


if __name__ == "__main__":
    sys.path.insert(0, str(common.ROOT / "tests"))
    main()
