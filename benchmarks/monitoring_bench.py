"""Monitoring benchmark: what request logging costs a request, and how fast `stable` moves.

    make bench-monitoring     # = tools/with-stack python benchmarks/monitoring_bench.py

1. Logging overhead. The server in its own process (`python -m serving --model_config_file`),
   one config without `logging_config` and one logging every request (sampling_rate 1.0), started
   alternately in each round. Figures: p50/p99 of one 1-image gRPC Predict (sequential), and
   images/s with 4 concurrent clients. Ratios logging/no logging from the same rounds.
2. Promote / roll back under load. Two versions of the model; 3 clients keep asking for `stable`.
   Per round: `promote 2` with HandleReloadConfigRequest (version 2 is loaded and warmed first),
   `rollback` with the request (version 1 was kept loaded), `promote 2` + `rollback` through the
   server's 1 s config poll only. Time from the command's start until the first answer from the
   other version; failed requests counted.

Medians over --repeat rounds.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import common

CONFIG = """model_config_list {{ config {{ name: "fmnist" base_path: "{base}" model_platform: "tensorflow"
{logging} }} }}"""
LOGGING = """logging_config {{ log_collector_config {{ filename_prefix: "{prefix}" }}
                 sampling_config {{ sampling_rate: {rate} }} }}"""


def start_server(config: Path, poll: float = 0.0) -> tuple[subprocess.Popen, str]:
    """The server on `config`, once it reports a model version."""
    flags = [f"--model_config_file={config}", f"--model_config_file_poll_wait_seconds={poll}",
             "--file_system_poll_wait_seconds=0"]
    return common.start_model_server(flags, lambda client: bool(client.status().model_version_status))


def logging_overhead(base: Path, work: Path, repeat: int, calls: int, seconds: float) -> dict:
    from serving.client import ServingClient

    one = np.random.default_rng(0).integers(0, 256, (1, 28, 28)).astype(np.float32)
    modes = {"no logging": None, "logging, sampling_rate 1.0": 1.0}
    rounds: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(repeat):
        for mode, rate in modes.items():
            logging = LOGGING.format(prefix=work / f"logs-{r}" / "fmnist", rate=rate) if rate else ""
            config = work / f"overhead-{r}-{rate}.config"
            config.write_text(CONFIG.format(base=base, logging=logging))
            proc, target = start_server(config)
            client = ServingClient(target, timeout=60)
            for _ in range(20):
                client.predict_images(one)  # warm the connection
            p50, p99 = common.latency(lambda: client.predict_images(one), calls)

            def make_call():
                c = ServingClient(target, timeout=60)
                return lambda: c.predict_images(one)
            rounds[mode].append({"p50_ms": p50, "p99_ms": p99,
                                 "images_per_s_4_clients": common.throughput(make_call, 1, 4, seconds)})
            client.close()
            common.stop(proc)
            common.print_round(f"round {r + 1} {mode}", rounds[mode][-1])
    figures = common.medians(rounds)
    off, on = figures["no logging"], figures["logging, sampling_rate 1.0"]
    return {"medians": figures, "ratio_logging_vs_off": {k: on[k] / off[k] for k in off}, "rounds": rounds}


class StableLoad:
    def __init__(self, target: str, clients: int = 3) -> None:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        self.answers: list[tuple[float, int]] = []
        self.failures = 0
        self.stop = threading.Event()
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.version_label = "fmnist", "stable"
        request.model_spec.signature_name = "serving_images"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 28, 28), np.float32)))
        self.request = request
        self.threads = [threading.Thread(target=self.run, args=(target,)) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, target: str) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not self.stop.is_set():
                try:
                    version = stub.Predict(self.request, timeout=30).model_spec.version.value
                    self.answers.append((time.monotonic(), version))
                except grpc.RpcError:
                    self.failures += 1

    def wait_for(self, version: int, after: float, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, v in reversed(self.answers[-200:]):
                if t >= after and v == version:
                    hits = [t2 for t2, v2 in self.answers if t2 >= after and v2 == version]
                    return min(hits) - after
            time.sleep(0.01)
        raise SystemExit(f"stable never answered from version {version}")

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def label_moves(model_dir: Path, work: Path, repeat: int) -> dict:
    from pipeline.monitoring import model_labels

    base = work / "labels" / "fmnist"
    for v in (1, 2):
        shutil.copytree(model_dir, base / str(v))
    config = str(work / "labels.config")
    model_labels.promote(config, 1, "stable", "fmnist", str(base))
    proc, target = start_server(Path(config), poll=1.0)
    load = StableLoad(target)
    load.wait_for(1, 0)

    def reload(server_config: object) -> None:
        model_labels.reload_server(target, server_config, config)

    rounds: list[dict] = []
    try:
        for r in range(repeat):
            figures = {}
            # Version 1 only is loaded now (first round) or kept as standby; promote loads 2 if needed.
            t = time.monotonic()
            model_labels.promote(config, 2, "stable", reload=reload)
            figures["promote_reload_request_s"] = load.wait_for(2, t)
            t = time.monotonic()
            model_labels.rollback(config, reload=reload)
            figures["rollback_reload_request_s"] = load.wait_for(1, t)
            time.sleep(1.5)
            t = time.monotonic()
            model_labels.promote(config, 2, "stable")
            figures["promote_config_poll_s"] = load.wait_for(2, t)
            time.sleep(1.5)
            t = time.monotonic()
            model_labels.rollback(config)
            figures["rollback_config_poll_s"] = load.wait_for(1, t)
            time.sleep(1.5)
            rounds.append(figures)
            common.print_round(f"round {r + 1}", figures)
    finally:
        load.close()
        common.stop(proc)
    return {"medians": common.medians({"label moves": rounds})["label moves"],
            "failed_requests": load.failures, "answered_requests": len(load.answers), "rounds": rounds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", help="a SavedModel version directory (default: newest sample push)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--parts", default="overhead,labels", help="comma-separated: overhead, labels")
    p.add_argument("--json", default=str(common.ROOT / "outputs" / "bench" / "monitoring.json"))
    args = p.parse_args()
    model_dir, work, base = common.served_copy(args.model_dir, "monitoring")
    parts = set(args.parts.split(","))
    report = {"model_dir": str(model_dir), "repeat": args.repeat}
    if "overhead" in parts:
        report["logging_overhead"] = logging_overhead(base, work, args.repeat, args.calls, args.seconds)
    if "labels" in parts:
        report["label_moves"] = label_moves(model_dir, work, args.repeat)
    common.write_result(args.json, report, echo=False)
    if "logging_overhead" in report:
        o = report["logging_overhead"]
        print("| server | p50 1 image (ms) | p99 1 image (ms) | 4 clients, batch 1 (img/s) |")
        print("| --- | ---: | ---: | ---: |")
        for m, med in o["medians"].items():
            print(f"| {m} | {med['p50_ms']:.2f} | {med['p99_ms']:.2f} | {med['images_per_s_4_clients']:.0f} |")
        print("ratios logging / no logging: "
              + ", ".join(f"{k} {v:.3f}" for k, v in o["ratio_logging_vs_off"].items()))
    if "label_moves" in report:
        lm = report["label_moves"]
        print("| move | median s |\n| --- | ---: |")
        for k, v in lm["medians"].items():
            print(f"| {k} | {v:.2f} |")
        print(f"failed requests {lm['failed_requests']} of {lm['answered_requests'] + lm['failed_requests']}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
