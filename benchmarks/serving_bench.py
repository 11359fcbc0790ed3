"""Serving benchmark as users run it: the model server in its own process (`fmnist serve`, with
TF Serving's flags), clients in this one over loopback gRPC, batching off and on -- next to the
same signature called in-process, all in one run.

    make bench-serving     # = tools/with-stack python benchmarks/serving_bench.py

In-process references: `tf.saved_model.load(...).signatures[...]` (a TF2 concrete function called
eagerly) and the server's own session-based path (`serving.savedmodel.LoadedVersion`) without
gRPC. Figures: p50/p99 latency of one 1-image Predict (sequential calls), and images/s with 8
concurrent clients sending batches of 1 and of 64 images. Each figure is the median of --repeat
rounds; fresh server processes per round.

Latency is measured side by side: the four modes take turns in blocks of --block calls (each
block after 3 untimed calls, so every mode is timed in its own steady state), so a change in the
machine's load hits all of them alike; the gRPC/in-process ratio is taken within each round, and
its median reported.

Threads: by default each side runs as its user would run it -- this process (the in-process
references) with TensorFlow's default pools, the server as `fmnist serve` deploys it (one intra-op
thread, schema/contract.py). --intra-op-threads / --inter-op-threads set TensorFlow's thread pools
on both sides alike instead (this process: tf.config.threading and the session's ConfigProto; the
server: the same ConfigProto through TF Serving's --tensorflow_session_config_file); 0 =
TensorFlow's default, -1 inter-op = run ops in the calling thread.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks import common
from schema.contract import SERVING_THREAD_FLAGS
from serving.ports import free_port
from serving.savedmodel import LoadedVersion, Signature


def percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return times[len(times) // 2] * 1000, times[max(int(len(times) * 0.99) - 1, 0)] * 1000


def interleaved_latency(calls: dict[str, Callable[[], object]], n: int, block: int, untimed: int = 3
                        ) -> dict[str, tuple[float, float]]:
    """p50/p99 (ms) of n sequential calls per mode, the modes taking turns in blocks."""
    times: dict[str, list[float]] = {m: [] for m in calls}
    while any(len(t) < n for t in times.values()):
        for mode, call in calls.items():
            for _ in range(untimed):
                call()
            for _ in range(min(block, n - len(times[mode]))):
                t = time.perf_counter()
                call()
                times[mode].append(time.perf_counter() - t)
    return {m: percentiles(t) for m, t in times.items()}


def recording_cost_us(calls: int = 200_000) -> dict[str, float]:
    """Microseconds per request that metrics recording adds in the server's code path: the request
    count and latency histogram plus the timed model call, with metrics on and off (NO_METRICS),
    on a model call that does nothing. Separates the recording's own cost from the noise between
    two server processes that the side-by-side latency cannot avoid."""
    from serving.batching import _timed
    from serving.metrics import NO_METRICS, Metrics

    def run(feeds: dict) -> dict:
        return feeds
    result = {}
    for label, metrics in (("off", NO_METRICS), ("on", Metrics())):
        started_all = time.perf_counter()
        for _ in range(calls):
            started = time.perf_counter()
            (run if metrics is NO_METRICS else _timed(run, metrics, "fmnist", "Predict"))({})
            metrics.request("fmnist", "Predict", "GRPC", "OK", time.perf_counter() - started)
        result[label] = (time.perf_counter() - started_all) / calls * 1e6
    return result


def canned_answer(model: LoadedVersion, signature: Signature, image: np.ndarray) -> bytes:
    """The floor server's canned answer: the model's own PredictResponse to `image`, serialized."""
    from tensorflow_serving.apis import predict_pb2

    from serving import tensors

    answer = predict_pb2.PredictResponse()
    answer.model_spec.name, answer.model_spec.version.value = "fmnist", 1
    answer.model_spec.signature_name = signature.name
    for key, value in model.run(signature, {"images": image}, sorted(signature.outputs)).items():
        tensors.fill_proto(answer.outputs[key], value)
    return answer.SerializeToString()


def floor_server(port: int, answer_file: str) -> int:
    """The gRPC floor: a PredictionService on grpc.server's thread pool, as the model server's,
    answering every Predict with a canned PredictResponse (the model's own answer to the
    benchmark image), so a round trip costs everything but the model and its plumbing."""
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    answer = predict_pb2.PredictResponse.FromString(Path(answer_file).read_bytes())

    class Canned(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 (gRPC's name)
            return answer

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Canned(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--floor-server"]:
        return floor_server(int(sys.argv[2]), sys.argv[3])
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", help="a SavedModel version directory (default: newest sample push)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--calls", type=int, default=200, help="sequential calls for latency")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput round")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--block", type=int, default=20, help="latency: calls per mode per turn")
    p.add_argument("--intra-op-threads", type=int, default=0,
                   help="TensorFlow intra-op threads, this process and the server alike (0 = TensorFlow's default)")
    p.add_argument("--inter-op-threads", type=int, default=0,
                   help="TensorFlow inter-op threads, both sides alike (0 = default, -1 = the calling thread)")
    p.add_argument("--json", default=str(common.ROOT / "outputs" / "bench" / "serving.json"))
    args = p.parse_args()

    import shutil
    import subprocess

    import tensorflow as tf

    # Before anything runs: TensorFlow makes its thread pools once per process.
    threads = {"intra_op_parallelism_threads": args.intra_op_threads,
               "inter_op_parallelism_threads": args.inter_op_threads}
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    session_config = tf.compat.v1.ConfigProto(**threads)

    from serving.client import ServingClient

    model_dir, work, base = common.served_copy(args.model_dir, "serving")
    from benchmarks.batching_sweep import TUNED, TUNED_FLAGS  # README's recommended batching (issue 30)
    (work / "batching.config").write_text(TUNED)
    (work / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    (work / "session.config").write_text("".join(f"{k}: {v}\n" for k, v in threads.items()))
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, 28, 28)).astype(np.float32)
    many = rng.integers(0, 256, (64, 28, 28)).astype(np.float32)

    fn = tf.saved_model.load(str(model_dir)).signatures["serving_images"]
    session_model = LoadedVersion("fmnist", 1, str(model_dir), session_config)
    session_sig = session_model.signatures["serving_images"]
    outputs = sorted(session_sig.outputs)
    (work / "answer.pb").write_bytes(canned_answer(session_model, session_sig, one))

    def start_server(kind: str) -> tuple[subprocess.Popen, str]:
        if kind == "floor":
            port = free_port()
            proc = subprocess.Popen([sys.executable, __file__, "--floor-server", str(port), str(work / "answer.pb")],
                                    cwd=common.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return proc, f"127.0.0.1:{port}"
        flags = ["--model_name=fmnist", f"--model_base_path={base}"]
        if kind == "metrics":  # batching off, TF Serving's Prometheus metrics on (issue 28): they are
            # recorded only when the REST port that serves them is open (the other servers have none)
            flags += [f"--monitoring_config_file={work / 'monitoring.config'}", f"--rest_api_port={free_port()}"]
        if kind == "on":
            flags += ["--enable_batching", f"--batching_parameters_file={work / 'batching.config'}", *TUNED_FLAGS]
        if any(threads.values()):
            flags.append(f"--tensorflow_session_config_file={work / 'session.config'}")
        return common.launch_model_server(flags, common.FMNIST_SERVE)

    modes = {"in-process, tf.saved_model.load": "eager", "in-process, session (serving/ without gRPC)": "session",
             "gRPC to its own process, batching off": "off",
             "gRPC to its own process, batching off, metrics on": "metrics",
             "gRPC to its own process, batching on": "on",
             "gRPC floor: canned answer, no model (latency only)": "floor"}
    rounds: dict[str, list[dict]] = {m: [] for m in modes}
    ratios: list[float] = []
    metrics_ratios: list[float] = []  # p50 with --monitoring_config_file / without, per round
    for r in range(args.repeat):
        servers = {kind: start_server(kind) for kind in ("off", "metrics", "on", "floor")}  # all load at once
        for proc, target in servers.values():
            common.wait_until_ready(proc, target, lambda client: client.predict_images(one) is not None)

        def make_call(kind: str, x: np.ndarray) -> Callable[[], object]:
            if kind == "eager":
                return lambda: fn(images=tf.constant(x))
            if kind == "session":
                return lambda: session_model.run(session_sig, {"images": x}, outputs)
            client = ServingClient(servers[kind][1], timeout=60)  # one channel per client, reused
            return lambda: client.predict_images(x)

        lat = interleaved_latency({m: make_call(k, one) for m, k in modes.items()}, args.calls, args.block)
        for mode, kind in modes.items():
            rounds[mode].append({"p50_ms": lat[mode][0], "p99_ms": lat[mode][1]})
            if kind != "floor":  # its answer is for one image, whatever was sent
                rounds[mode][-1].update({
                    "batch1_images_per_s": common.throughput(lambda: make_call(kind, one), 1, args.clients,
                                                             args.seconds),
                    "batch64_images_per_s": common.throughput(lambda: make_call(kind, many), 64, args.clients,
                                                              args.seconds)})
            common.print_round(f"round {r + 1} {mode}", rounds[mode][-1], digits=2)
        for proc, _ in servers.values():
            common.stop(proc)
        ratios.append(lat["gRPC to its own process, batching off"][0] / lat["in-process, tf.saved_model.load"][0])
        metrics_ratios.append(lat["gRPC to its own process, batching off, metrics on"][0]
                              / lat["gRPC to its own process, batching off"][0])
        print(f"round {r + 1} metrics on p50 / metrics off p50, side by side: {metrics_ratios[-1]:.3f}x",
              file=sys.stderr, flush=True)
        print(f"round {r + 1} gRPC p50 / in-process p50, side by side: {ratios[-1]:.2f}x", file=sys.stderr,
              flush=True)
    threads_note = (f"TensorFlow threads, both sides: {threads}" if any(threads.values()) else
                    "in-process: TensorFlow's default threads; server: fmnist serve's "
                    + " ".join(SERVING_THREAD_FLAGS))
    recording = recording_cost_us()
    medians = common.medians(rounds)
    ref = medians["in-process, tf.saved_model.load"]
    report = {"model_dir": str(model_dir), "repeat": args.repeat, "clients": args.clients,
              "calls": args.calls, "block": args.block, "tensorflow_threads": threads, "threads": threads_note,
              "grpc_p50_over_in_process_p50_per_round": ratios,
              "grpc_p50_over_in_process_p50_median": statistics.median(ratios),
              "metrics_on_p50_over_off_p50_per_round": metrics_ratios,
              "metrics_on_p50_over_off_p50_median": statistics.median(metrics_ratios),
              "metrics_recording_us_per_call": recording,
              "medians": medians,
              "ratios_vs_in_process": {m: {k: v / ref[k] for k, v in med.items()} for m, med in medians.items()},
              "grpc_floor_share_of_grpc_p50": statistics.median(
                  f["p50_ms"] / g["p50_ms"]
                  for f, g in zip(rounds["gRPC floor: canned answer, no model (latency only)"],
                                  rounds["gRPC to its own process, batching off"])),
              "rounds": rounds}
    common.write_result(args.json, report, echo=False)
    print("| mode | p50 1 image (ms) | p99 1 image (ms) | 8 clients, batch 1 (img/s) | 8 clients, batch 64 (img/s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for m, med in medians.items():
        rates = " | ".join(f"{med[k]:.0f}" if k in med else "-"
                           for k in ("batch1_images_per_s", "batch64_images_per_s"))
        print(f"| {m} | {med['p50_ms']:.2f} | {med['p99_ms']:.2f} | {rates} |")
    print(f"gRPC p50 one image / in-process (tf.saved_model.load) p50, side by side per round: "
          f"{', '.join(f'{x:.2f}x' for x in ratios)}; median {statistics.median(ratios):.2f}x "
          f"({threads_note})")
    print(f"metrics on / off p50 (batching off), per round: {', '.join(f'{x:.3f}x' for x in metrics_ratios)}; "
          f"median {statistics.median(metrics_ratios):.3f}x; recording itself: {recording['on']:.2f} us per call "
          f"with metrics on, {recording['off']:.2f} us off")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
