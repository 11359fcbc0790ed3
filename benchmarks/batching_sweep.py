"""Batching under concurrency (issue 30): the model server in its own process (`fmnist serve`,
TF Serving's flags) with batching off, on with TF Serving's example parameters, on with the
parameters README recommends, and those with two intra-op threads, side by side in one run;
clients in their own processes.

    make bench-batching     # = tools/with-stack python benchmarks/batching_sweep.py --model-dir ...

Figures, each the median of --repeat rounds (fresh servers per round, the modes taking turns
within each cell so load changes hit all alike):
* one client, one image, sequential calls: p50/p99 per mode, next to the in-process call
  (`tf.saved_model.load(...).signatures[...]`); the ratios are taken within each round;
* throughput sweep: --clients (8, 32, 128) concurrent clients sending --batches (1, 8) images
  per request for --seconds: images/s, the p50/p99 of the requests' latency, and the CPU each
  request cost the server process and the load generators (ms of CPU per request, psutil's
  cpu_times over the timed window);
* the CPU bound: a "floor" server (serving_bench.py's: same grpc.server thread pool, every Predict
  answered with the model's canned answer) gives what one request costs the server and the clients
  without any model. No server, batched or not, can answer more one-image requests per second than
  cores / (that cost + the model's CPU per image at its cheapest batch size), measured here too.

Clients are --client-procs processes of grpc.aio coroutines (one channel and one prebuilt
request of its own images per client), so the load generator's interpreter lock is not what
limits the server; they share the machine's cores with the server, as on one host.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks import common

# tensorflow_serving/servables/tensorflow/testdata/batching_config.txt (used by
# tensorflow_model_server_test.py): TF Serving's own example parameters.
TF_EXAMPLE = ("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
              "max_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 8 }\n")
# The recommendation (README "When to turn batching on"), measured here against batching/README.md's
# CPU-only starting point (num_batch_threads = cores, timeout 0): ONE batch thread, so requests that
# arrive while a batch runs form the next one (with two, a free thread takes each request nearly
# alone: mean batch 3.3 vs 6.4 at 32 clients); timeout 0, so a lone request never waits; model
# calls of at most 32 rows (the cost per image stops falling there: 0.26 ms at 32 vs 0.61 ms alone),
# with larger requests (up to 1024 rows; `fmnist predict` sends 256) split across batches instead
# of refused; the queue bounded at 64 batches of 32 rows.
TUNED = ("max_batch_size { value: 1024 }\nenable_large_batch_splitting { value: true }\n"
         "max_execution_batch_size { value: 32 }\nbatch_timeout_micros { value: 0 }\n"
         "max_enqueued_batches { value: 64 }\nnum_batch_threads { value: 1 }\n")
TUNED_FLAGS = ["--grpc_max_threads=64"]  # requests in the server at once: enough to meet in a batch
# For clients that send batches themselves: the same, with the batch thread's model call on both
# cores (fmnist serve's contract is one intra-op thread, schema/contract.py).
TWO_CORES = ["--tensorflow_intra_op_parallelism=2", "--tensorflow_inter_op_parallelism=-1"]
FLOOR = "floor: canned answer, no model"  # one-image cells only: its answer is for one image
MODES: dict[str, tuple[str | None, list[str]]] = {
    "off": (None, []), "on, TF Serving's example": (TF_EXAMPLE, []), "on, tuned": (TUNED, TUNED_FLAGS),
    "on, tuned, 2 intra-op threads": (TUNED, TUNED_FLAGS + TWO_CORES)}


# --- client processes ------------------------------------------------------------------------------------
def client_process(seed: int) -> int:
    """Load generator, kept for the whole run (importing the protos imports TensorFlow: seconds).
    Reads one JSON command a line ({"target", "clients", "batch", "seconds"}): opens `clients`
    channels, each with its own prebuilt request of its own images, prints "ready" once each had an
    answer, waits for a line, then every client calls Predict back to back for `seconds`; prints
    {"images", "latencies", "errors"} for the calls completed in that window."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving import tensors

    rng = np.random.default_rng(seed)

    async def cell(target: str, clients: int, batch: int, seconds: float) -> None:
        channels, stubs, requests = [], [], []
        for _ in range(clients):
            channels.append(grpc.aio.insecure_channel(target))
            stubs.append(prediction_service_pb2_grpc.PredictionServiceStub(channels[-1]))
            request = predict_pb2.PredictRequest()
            request.model_spec.name, request.model_spec.signature_name = "fmnist", "serving_images"
            tensors.fill_request_proto(request.inputs["images"],  # as tf.make_tensor_proto writes it
                                       rng.integers(0, 256, (batch, 28, 28)).astype(np.float32))
            requests.append(request)
        await asyncio.gather(*(s.Predict(r, timeout=120) for s, r in zip(stubs, requests)))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        latencies: list[float] = []
        errors = 0
        end = time.perf_counter() + seconds

        async def loop(stub, request) -> None:
            nonlocal errors
            while True:
                started = time.perf_counter()
                try:
                    await stub.Predict(request, timeout=120)
                except grpc.RpcError:
                    errors += 1
                now = time.perf_counter()
                if now > end:
                    return
                latencies.append(now - started)
        await asyncio.gather(*(loop(s, r) for s, r in zip(stubs, requests)))
        for channel in channels:
            await channel.close()
        print(json.dumps({"images": len(latencies) * batch, "latencies": latencies, "errors": errors}), flush=True)

    print("up", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        asyncio.run(cell(command["target"], command["clients"], command["batch"], command["seconds"]))
    return 0


class LoadClients:
    """`procs` load-generator processes; run() spreads a cell's clients over them."""

    def __init__(self, procs: int) -> None:
        self.workers = [subprocess.Popen([sys.executable, __file__, "--client", str(i)], cwd=common.ROOT,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                        for i in range(procs)]
        for w in self.workers:
            if w.stdout.readline().strip() != "up":
                raise SystemExit(f"load client failed: {w.args}")

    def run(self, target: str, clients: int, batch: int, seconds: float, server_pid: int) -> dict[str, float]:
        """images/s, request p50/p99 (ms) of `clients` concurrent clients, and the CPU ms per request
        of the server process and of the load generators over the timed window."""
        workers = self.workers[:clients]
        shares = [clients // len(workers) + (i < clients % len(workers)) for i in range(len(workers))]
        for w, n in zip(workers, shares):
            w.stdin.write(json.dumps({"target": target, "clients": n, "batch": batch, "seconds": seconds}) + "\n")
            w.stdin.flush()
        for w in workers:
            if w.stdout.readline().strip() != "ready":
                raise SystemExit(f"load client failed: {w.args}")
        pids = [w.pid for w in self.workers]
        cpu = [common.cpu_seconds(server_pid), sum(map(common.cpu_seconds, pids))]
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
        results = [json.loads(w.stdout.readline()) for w in workers]
        cpu = [common.cpu_seconds(server_pid) - cpu[0], sum(map(common.cpu_seconds, pids)) - cpu[1]]
        latencies = sorted(x for r in results for x in r["latencies"])
        n = len(latencies)
        requests = max(sum(r["images"] for r in results) // batch, 1)
        return {"images_per_s": sum(r["images"] for r in results) / seconds,
                "server_cpu_ms_per_request": cpu[0] * 1000 / requests,
                "clients_cpu_ms_per_request": cpu[1] * 1000 / requests,
                "p50_ms": latencies[n // 2] * 1000 if n else float("nan"),
                "p99_ms": latencies[max(int(n * 0.99) - 1, 0)] * 1000 if n else float("nan"),
                "errors": sum(r["errors"] for r in results)}

    def close(self) -> None:
        for w in self.workers:
            w.stdin.close()
            w.wait(timeout=60)


def model_cost_per_image(model_dir: Path, answer_file: Path, one: np.ndarray) -> dict[str, dict[int, float]]:
    """What the server's own model call (serving.savedmodel's Session callable with the contract's
    threads) costs per image, by batch size, median of 50 calls: "wall" ms and "cpu" ms (this
    process's CPU time over the call, whichever threads ran the kernels). Run in a fresh process
    (`--model-cost`): TensorFlow sizes its thread pools once per process, for whichever session or
    eager context comes first. Writes the floor server's canned answer (the model's own
    PredictResponse to `one`) to `answer_file` on the way."""
    import tensorflow as tf

    from benchmarks.serving_bench import canned_answer
    from schema.contract import SERVING_INTER_OP_THREADS, SERVING_INTRA_OP_THREADS
    from serving import inference
    from serving.savedmodel import LoadedVersion

    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=SERVING_INTRA_OP_THREADS,
                                      inter_op_parallelism_threads=SERVING_INTER_OP_THREADS)
    model = LoadedVersion("fmnist", 1, str(model_dir), config)
    sig = inference.signature(model, "serving_images")
    outputs = sorted(sig.outputs)
    answer_file.write_bytes(canned_answer(model, sig, one))
    cost: dict[str, dict[int, float]] = {"wall": {}, "cpu": {}}
    for batch in (1, 8, 32, 64):
        images = np.repeat(one, batch, axis=0)
        wall, cpu = [], []
        for i in range(60):
            started, started_cpu = time.perf_counter(), time.process_time()
            model.run(sig, {"images": images}, outputs)
            if i >= 10:
                wall.append((time.perf_counter() - started) * 1000 / batch)
                cpu.append((time.process_time() - started_cpu) * 1000 / batch)
        cost["wall"][batch] = round(statistics.median(wall), 4)
        cost["cpu"][batch] = round(statistics.median(cpu), 4)
    model.close()
    return cost


# --- the run ----------------------------------------------------------------------------------------------
def main() -> int:
    if sys.argv[1:2] == ["--client"]:
        return client_process(int(sys.argv[2]))
    if sys.argv[1:2] == ["--model-cost"]:
        cost = model_cost_per_image(Path(sys.argv[2]), Path(sys.argv[3]), np.load(sys.argv[4]))
        print(json.dumps({kind: {str(b): v for b, v in by_batch.items()} for kind, by_batch in cost.items()}))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", help="a SavedModel version directory (default: newest sample push)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--calls", type=int, default=200, help="sequential one-image calls per mode (latency)")
    p.add_argument("--block", type=int, default=20, help="latency: calls per mode per turn")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput cell")
    p.add_argument("--clients", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--client-procs", type=int, default=2, help="load-generator processes")
    p.add_argument("--tuned", default=TUNED, help="the recommended BatchingParameters to compare (text format)")
    p.add_argument("--tuned-flags", default=" ".join(TUNED_FLAGS), help="server flags of the tuned mode")
    p.add_argument("--json", default=str(common.ROOT / "outputs" / "bench" / "batching.json"))
    args = p.parse_args()
    MODES["on, tuned"] = (args.tuned, args.tuned_flags.split())

    import shutil

    import tensorflow as tf

    from benchmarks.serving_bench import interleaved_latency
    from serving.client import ServingClient

    model_dir, work, base = common.served_copy(args.model_dir, "batching")
    load = LoadClients(args.client_procs)
    one = np.random.default_rng(0).integers(0, 256, (1, 28, 28)).astype(np.float32)
    fn = tf.saved_model.load(str(model_dir)).signatures["serving_images"]
    np.save(work / "one.npy", one)
    model_cost = json.loads(subprocess.run(
        [sys.executable, __file__, "--model-cost", str(model_dir), str(work / "answer.pb"), str(work / "one.npy")],
        cwd=common.ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout.splitlines()[-1])
    print(f"model call per image (ms) by batch size: {model_cost}", file=sys.stderr, flush=True)
    model_ms = min(model_cost["cpu"].values())  # CPU, not wall: the bound counts CPU time

    def start(mode: str) -> tuple[subprocess.Popen, str]:
        parameters, extra = MODES[mode]
        flags = ["--model_name=fmnist", f"--model_base_path={base}", *extra]
        if parameters is not None:
            config = work / f"batching-{list(MODES).index(mode)}.config"
            config.write_text(parameters)
            flags += ["--enable_batching", f"--batching_parameters_file={config}"]
        return common.launch_model_server(flags, common.FMNIST_SERVE)

    def start_floor() -> tuple[subprocess.Popen, str]:
        port = common.free_port()
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.serving_bench", "--floor-server", str(port),
                                 str(work / "answer.pb")], cwd=common.ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        return proc, f"127.0.0.1:{port}"

    latency_rounds: dict[str, list[dict]] = {m: [] for m in ["in-process, tf.saved_model.load", *MODES]}
    ratios: dict[str, list[float]] = {m: [] for m in MODES}
    sweep: dict[str, dict[str, list[dict]]] = {}
    # SIGTERM too ends in `finally`: no server or load generator outlives an interrupted run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for r in range(args.repeat):
            servers = {mode: start(mode) for mode in MODES}
            for proc, target in servers.values():
                common.wait_until_ready(proc, target, lambda c: c.predict_images(one) is not None)
            clients = {mode: ServingClient(target, timeout=60) for mode, (_, target) in servers.items()}
            servers[FLOOR] = start_floor()
            common.wait_until_ready(*servers[FLOOR], lambda c: c.predict_images(one) is not None)
            calls: dict[str, Callable[[], object]] = {
                "in-process, tf.saved_model.load": lambda: fn(images=tf.constant(one))}
            calls.update({mode: (lambda c=c: c.predict_images(one)) for mode, c in clients.items()})
            lat = interleaved_latency(calls, args.calls, args.block)
            for mode, (p50, p99) in lat.items():
                latency_rounds[mode].append({"p50_ms": p50, "p99_ms": p99})
            for mode in MODES:
                ratios[mode].append(lat[mode][0] / lat["in-process, tf.saved_model.load"][0])
            print(f"round {r + 1} one client p50 (ms): " + ", ".join(f"{m} {v[0]:.3f}" for m, v in lat.items()),
                  file=sys.stderr, flush=True)
            for c in clients.values():
                c.close()
            for n in args.clients:
                for batch in args.batches:
                    cell = f"{n} clients x batch {batch}"
                    modes = [*MODES, FLOOR] if batch == 1 else list(MODES)
                    order = modes[r % len(modes):] + modes[:r % len(modes)]  # who goes first rotates
                    for mode in order:
                        result = load.run(servers[mode][1], n, batch, args.seconds, servers[mode][0].pid)
                        sweep.setdefault(cell, {}).setdefault(mode, []).append(result)
                        common.print_round(f"round {r + 1} {cell} {mode}", result, digits=2)
            for proc, _ in servers.values():
                common.stop(proc)
            servers = {}
    finally:
        for proc, _ in servers.values():
            proc.kill()
        load.close()
    lat_medians = common.medians(latency_rounds)
    sweep_medians = {cell: common.medians(modes) for cell, modes in sweep.items()}
    # The CPU bound of each one-image cell, per round: cores / (floor's server + clients CPU per
    # request + the model's cheapest CPU per image), and that bound over batching off's images/s.
    cores = len(os.sched_getaffinity(0))
    bounds: dict[str, list[dict[str, float]]] = {}
    for cell, modes in sweep.items():
        if FLOOR not in modes:
            continue
        for floor, off in zip(modes[FLOOR], modes["off"]):
            cost = floor["server_cpu_ms_per_request"] + floor["clients_cpu_ms_per_request"] + model_ms
            bound = cores * 1000 / cost
            bounds.setdefault(cell, []).append({"cpu_ms_per_image_at_least": cost, "images_per_s_at_most": bound,
                                                "bound_over_off": bound / off["images_per_s"]})
    report = {"model_dir": str(model_dir), "repeat": args.repeat, "seconds": args.seconds, "cores": cores,
              "model_ms_per_image": model_cost, "cpu_bound_rounds": bounds,
              "client_procs": args.client_procs, "modes": MODES, "latency_medians": lat_medians,
              "grpc_p50_over_in_process_per_round": ratios,
              "grpc_p50_over_in_process_median": {m: statistics.median(v) for m, v in ratios.items()},
              "sweep_medians": sweep_medians, "latency_rounds": latency_rounds, "sweep_rounds": sweep}
    common.write_result(args.json, report, echo=False)
    print("| one client, 1 image | p50 (ms) | p99 (ms) | p50 / in-process (median of per-round ratios) |")
    print("| --- | ---: | ---: | ---: |")
    for mode, med in lat_medians.items():
        ratio = f"{statistics.median(ratios[mode]):.2f}x" if mode in ratios else "1"
        print(f"| {mode} | {med['p50_ms']:.3f} | {med['p99_ms']:.3f} | {ratio} |")
    print()
    print("| clients x batch | " + " | ".join(f"{m}: img/s, p50 / p99 ms" for m in MODES) + " | on tuned / off |")
    print("| --- | " + " | ".join("---:" for _ in MODES) + " | ---: |")
    for cell, modes in sweep_medians.items():
        cols = " | ".join(f"{modes[m]['images_per_s']:,.0f}, {modes[m]['p50_ms']:.1f} / {modes[m]['p99_ms']:.1f}"
                          for m in MODES)
        gain = statistics.median(on["images_per_s"] / off["images_per_s"]
                                 for on, off in zip(sweep[cell]["on, tuned"], sweep[cell]["off"]))
        print(f"| {cell} | {cols} | {gain:.2f}x |")
    print()
    print("CPU per request (ms), server / load generators, medians of the rounds:")
    print("| clients x batch | " + " | ".join([*MODES, FLOOR]) + " |")
    print("| --- | " + " | ".join("---:" for _ in [*MODES, FLOOR]) + " |")
    for cell, modes in sweep_medians.items():
        print(f"| {cell} | " + " | ".join(
            f"{modes[m]['server_cpu_ms_per_request']:.3f} / {modes[m]['clients_cpu_ms_per_request']:.3f}"
            if m in modes else "-" for m in [*MODES, FLOOR]) + " |")
    print()
    print(f"Model call per image (ms by batch size): {model_cost}; the bound takes {model_ms} ms. "
          f"CPU bound on {cores} cores:")
    print("| clients x 1 image | CPU per image at least (ms) | images/s at most | bound / off, per round |")
    print("| --- | ---: | ---: | --- |")
    for cell, rounds in bounds.items():
        med = common.medians({"b": rounds})["b"]
        per_round = ", ".join(f"{b['bound_over_off']:.2f}" for b in rounds)
        print(f"| {cell} | {med['cpu_ms_per_image_at_least']:.3f} | {med['images_per_s_at_most']:,.0f} | {per_round} |")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
