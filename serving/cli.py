"""`fmnist serve` (and `python -m serving`): the model server with TF Serving's command line.

The same flags as `tensorflow_model_server`, so one argument list works here, in the Kubernetes
manifest and with the official image:

    --port --rest_api_port --model_name --model_base_path --model_config_file
    --model_config_file_poll_wait_seconds --file_system_poll_wait_seconds
    --enable_batching --batching_parameters_file --rest_api_timeout_in_ms
    --tensorflow_session_parallelism --tensorflow_intra_op_parallelism
    --tensorflow_inter_op_parallelism --tensorflow_session_config_file --monitoring_config_file

Friendlier aliases (`--model-base` for a whole serving root, `--model-config` for the YAML
alternative, `--batching`...) and what TF Serving does not have (host, TLS, limits) are extra.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def models_from_args(args: argparse.Namespace) -> list:
    from serving.config import read_model_config_file
    from serving.model_manager import ModelConfig, models_from_base

    if args.model_config_file:
        return read_model_config_file(args.model_config_file)
    if args.model_base_path:
        return [ModelConfig(args.model_name, str(Path(args.model_base_path).resolve()))]
    if args.model_base:
        models = models_from_base(str(Path(args.model_base).resolve()))
        if not models:
            raise SystemExit(f"serve: no model directories under {args.model_base}")
        return models
    raise SystemExit("serve: give --model_base_path (with --model_name), --model_config_file or --model-base")


def batching_from_args(args: argparse.Namespace):
    """As tensorflow_model_server (server.cc): --enable_batching with a parameters file reads it;
    without one, every field keeps its default and the thread pool is "model_server_batch_threads".
    --max-batch-size / --batch-timeout-micros (this server's) override either when given."""
    import dataclasses

    from serving.batching import BatchingConfigError, BatchingParameters
    from serving.config import ConfigError, read_batching_parameters_file

    if not args.enable_batching:
        if args.batching_parameters_file:
            raise ConfigError("server_options.batching_parameters_file is set without setting "
                              "server_options.enable_batching to true.")
        return None
    if args.batching_parameters_file:
        params = read_batching_parameters_file(args.batching_parameters_file)
    else:
        params = BatchingParameters(thread_pool_name="model_server_batch_threads")
    overrides = {k: v for k, v in (("max_batch_size", args.max_batch_size),
                                   ("batch_timeout_micros", args.batch_timeout_micros)) if v is not None}
    try:
        return dataclasses.replace(params, **overrides).validate() if overrides else params
    except BatchingConfigError as e:
        raise ConfigError(str(e)) from None


def session_config_from_args(args: argparse.Namespace):
    """The Session ConfigProto as tensorflow_model_server builds it (server.cc): the session
    config file first, then either both --tensorflow_*_op_parallelism flags or, when neither is
    set, --tensorflow_session_parallelism for both (0 = TensorFlow picks). Unlike server.cc, thread
    counts from the file are kept when no flag is given (the flags' help says they override)."""
    from serving.config import ConfigError, read_session_config_file

    intra, inter, both = (args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism,
                          args.tensorflow_session_parallelism)
    if intra > 0 and inter > 0 and both > 0:
        raise ConfigError("Either configure --tensorflow_session_parallelism or "
                          "(--tensorflow_intra_op_parallelism, --tensorflow_inter_op_parallelism) "
                          "separately. You cannot configure all.")
    if not (args.tensorflow_session_config_file or any((intra, inter, both))):
        if args.default_op_parallelism == (0, 0):
            return None  # TensorFlow's defaults, as TF Serving's
        intra, inter = args.default_op_parallelism  # the embedding command's (register)
    config = read_session_config_file(args.tensorflow_session_config_file)
    if intra > 0 or inter > 0:  # server.cc: then both are set, e.g. inter-op -1 (the calling thread)
        config.intra_op_parallelism_threads, config.inter_op_parallelism_threads = intra, inter
    elif both:
        config.intra_op_parallelism_threads = config.inter_op_parallelism_threads = both
    return config


def server_from_args(args: argparse.Namespace):
    from serving.config import ConfigError, read_monitoring_config_file

    tls = None
    if args.tls_cert:
        tls = (Path(args.tls_key).read_bytes(), Path(args.tls_cert).read_bytes())
    try:
        models = models_from_args(args)
        batching = batching_from_args(args)
        session_config = session_config_from_args(args)
        metrics_path = read_monitoring_config_file(args.monitoring_config_file)
    except ConfigError as e:
        raise SystemExit(f"serve: {e}") from None
    from serving.request_log import LoggerLimits
    from serving.server import ModelServer  # TensorFlow is imported only once the config is good
    return ModelServer(
        models, host=args.host, port=args.port, rest_port=args.rest_api_port or None, batching=batching,
        poll_seconds=args.file_system_poll_wait_seconds, tls=tls,
        max_message_bytes=args.max_message_mb * 1024 * 1024, max_tensor_bytes=args.max_tensor_mb * 1024 * 1024,
        max_body_bytes=args.max_body_mb * 1024 * 1024, rest_timeout_ms=args.rest_api_timeout_in_ms,
        workers=args.grpc_max_threads,
        rest_max_connections=args.rest_max_connections, rest_idle_timeout=args.rest_idle_timeout_seconds,
        keep_served_signatures=not args.allow_version_signature_removal,
        model_config_file=args.model_config_file,
        config_poll_seconds=args.model_config_file_poll_wait_seconds, session_config=session_config,
        metrics_path=metrics_path,
        request_log_limits=LoggerLimits(queue_size=args.request_log_queue_size,
                                        max_file_bytes=int(args.request_log_max_file_mb * 1024 * 1024),
                                        flush_seconds=args.request_log_flush_seconds))


def cmd_serve(args: argparse.Namespace) -> int:
    server = server_from_args(args)
    from serving.server import serve_until_signalled
    return serve_until_signalled(server, grace=args.grace)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    tfs = p.add_argument_group("TensorFlow Serving flags")
    tfs.add_argument("--port", type=int, default=8500, help="gRPC port")
    tfs.add_argument("--rest_api_port", "--rest-port", dest="rest_api_port", type=int, default=8501,
                     help="REST port (0 = no REST)")
    tfs.add_argument("--model_name", "--model-name", dest="model_name", default="default",
                     help="name of the model given by --model_base_path")
    tfs.add_argument("--model_base_path", "--model-path", dest="model_base_path",
                     help="one model's base path (<path>/<version>/)")
    tfs.add_argument("--model_config_file", "--model-config", dest="model_config_file",
                     help="text-format ModelServerConfig (or this project's YAML, *.yaml)")
    tfs.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0.0,
                     help="re-read --model_config_file this often (0 = never)")
    tfs.add_argument("--file_system_poll_wait_seconds", "--poll-seconds", dest="file_system_poll_wait_seconds",
                     type=float, default=1.0, help="look for new versions this often (0 = only at start)")
    tfs.add_argument("--enable_batching", "--batching", dest="enable_batching", type=_bool, nargs="?",
                     const=True, default=False, help="server-side batching of concurrent requests")
    tfs.add_argument("--batching_parameters_file", help="text-format BatchingParameters")
    tfs.add_argument("--rest_api_timeout_in_ms", type=int, default=30_000,
                     help="REST call timeout (0 = none)")
    tfs.add_argument("--grpc_max_threads", type=int, default=16,
                     help="threads handling gRPC calls (requests in the server at once; TF Serving's default "
                          "is 4 x CPUs, 16 here); with --enable_batching, at least the concurrent clients "
                          "whose requests should meet in one batch")
    for threads, meaning in (("session", "threads for running a Session, intra- and inter-op"),
                             ("intra_op", "threads parallelising one op"),
                             ("inter_op", "ops run at the same time")):
        tfs.add_argument(f"--tensorflow_{threads}_parallelism", type=int, default=0,
                         help=f"{meaning} (0 = TensorFlow picks)")
    tfs.add_argument("--tensorflow_session_config_file",
                     help="text-format tensorflow.ConfigProto for the model Sessions")
    tfs.add_argument("--monitoring_config_file",
                     help="text-format MonitoringConfig: prometheus_config { enable: true path: ... } serves "
                          "TF Serving's metrics on the REST port")
    p.set_defaults(default_op_parallelism=(0, 0))  # no flag: set by an embedding command (register)
    extra = p.add_argument_group("this server's additions")
    extra.add_argument("--model-base", help="serving root: every <root>/<model>/<version>/ is served")
    extra.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    extra.add_argument("--max-batch-size", type=int, default=None,
                       help="batching: overrides max_batch_size (default: the parameters file's, else 1000)")
    extra.add_argument("--batch-timeout-micros", type=int, default=None,
                       help="batching: overrides batch_timeout_micros (default: the parameters file's, else 0)")
    extra.add_argument("--max-message-mb", type=int, default=16, help="gRPC message limit")
    extra.add_argument("--max-tensor-mb", type=int, default=64, help="claimed size limit of one request tensor")
    extra.add_argument("--max-body-mb", type=int, default=64, help="REST body limit")
    extra.add_argument("--rest-max-connections", type=int, default=512)
    extra.add_argument("--rest-idle-timeout-seconds", type=float, default=30.0)
    extra.add_argument("--allow_version_signature_removal", type=_bool, nargs="?", const=True, default=False,
                       help="switch to a new version even if it lacks a signature the served one has "
                            "(TF Serving's behaviour); by default the served version stays")
    extra.add_argument("--request_log_queue_size", type=int, default=4096,
                       help="records waiting to be written per model (logging_config); more are dropped and counted")
    extra.add_argument("--request_log_max_file_mb", type=float, default=64.0,
                       help="start a new request log file after this size")
    extra.add_argument("--request_log_flush_seconds", type=float, default=1.0,
                       help="flush request log files at least this often (a crash loses at most this tail)")
    extra.add_argument("--grace", type=float, default=30.0, help="seconds to drain on SIGTERM")
    extra.add_argument("--tls-cert", help="PEM certificate for gRPC TLS (with --tls-key)")
    extra.add_argument("--tls-key")


def register(sub: argparse._SubParsersAction, default_op_parallelism: tuple[int, int] = (0, 0)) -> None:
    """The `serve` sub-command. `default_op_parallelism` (intra, inter) other than (0, 0) stands for
    `--tensorflow_intra_op_parallelism=I --tensorflow_inter_op_parallelism=J` when the command line
    sets no thread flag and no session config file: a deployment's tuning, kept out of this generic
    server's own defaults (TF Serving's)."""
    intra, inter = default_op_parallelism
    epilog = (f"Without thread flags or a session config file, this command serves with "
              f"--tensorflow_intra_op_parallelism={intra} --tensorflow_inter_op_parallelism={inter}."
              if default_op_parallelism != (0, 0) else None)
    serve = sub.add_parser("serve", help="TensorFlow-Serving-compatible gRPC + REST model server", epilog=epilog)
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve, default_op_parallelism=default_op_parallelism)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return cmd_serve(args)
