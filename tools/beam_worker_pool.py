"""A Beam Python worker pool bound to one address: the TaskManager sidecar of `tools/flink`.

Beam's own entry point (`python -m apache_beam.runners.worker.worker_pool_main --service_port=P`)
binds `[::]:P`, every address. That is right in a Kubernetes pod, where each TaskManager has its
pool on its own `localhost:50000`; on one machine two pools cannot both own a port, and one pool
shared by two TaskManagers breaks: the pool keys its SDK harness processes by `worker_id`
(`BeamFnExternalWorkerPoolServicer._worker_processes`), which each TaskManager numbers on its own
("1-1", "2-1", ...), so one TaskManager's StopWorker kills the other's harness and its task waits
for ever ("Still waiting for startup of environment", seen here). So each pool here binds its own
loopback address (127.0.0.2, 127.0.0.3, ...) and each TaskManager resolves the one name in the
Beam arguments, `beam-worker-pool`, to its own pool (tools/flink gives each JVM its own hosts file).

Only the binding is ours: the servicer, which starts one SDK harness process per StartWorker
request, is Beam's.
"""
from __future__ import annotations

import argparse
import logging
import threading

import grpc
from apache_beam.portability.api import beam_fn_api_pb2_grpc
from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="host:port to bind, e.g. 127.0.0.2:50000")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The options Beam's pool sets: the runner's control channel may sit idle between bundles.
    server = grpc.server(thread_pool_executor(), options=[("grpc.http2.max_pings_without_data", 0),
                                                          ("grpc.http2.max_ping_strikes", 0),
                                                          ("grpc.so_reuseport", 0)])
    if server.add_insecure_port(args.address) == 0:
        raise SystemExit(f"could not bind the Beam worker pool to {args.address}")
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
        BeamFnExternalWorkerPoolServicer(use_process=True, data_buffer_time_limit_ms=-1), server)
    server.start()
    logging.info("Beam worker pool listening on %s", args.address)
    threading.Event().wait()


def thread_pool_executor():
    """Beam's own unbounded executor, as its pool uses (a StartWorker call blocks while it waits)."""
    from apache_beam.utils import thread_pool_executor as pool
    return pool.shared_unbounded_instance()


if __name__ == "__main__":
    main()
