"""`fmnist`: the one command users type. Sub-commands import TensorFlow only when they need it.

Quiet by default: TFX's per-artifact INFO logging and TensorFlow's native start-up lines are hidden
(pipeline/quiet.py), the progress display and warnings stay; `fmnist --verbose ...` shows all of it.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from components.errors import FmnistError
from pipeline.config_args import add_config_arguments, config_from_args

log = logging.getLogger("fmnist")


def cmd_run(args: argparse.Namespace) -> int:
    watching = getattr(args, "watch", None) is not None or getattr(args, "if_new_span", False)
    if getattr(args, "watch", None):
        args.data = args.watch          # `fmnist run --watch DATA`
    config = config_from_args(args)
    if watching and not config.spans:   # watching only makes sense for the span layout
        config = config.replace(spans=True)
    if not watching:  # fail in a second, not after TensorFlow's start-up
        from pipeline import sources
        sources.check_files(config)   # the data source's own check (pipeline/sources/); DataSelectionError: exit 2
    from pipeline import runner

    def run_once() -> int:
        print(f"running pipeline '{config.pipeline_name}' on {config.data_root}\n"
              f"  outputs under {config.output_root}; serving dir {config.serving_model_dir}", file=sys.stderr)
        summary = runner.run_local(config)
        print(runner.format_summary(summary, config))
        return runner.exit_code(summary)

    if watching:
        from pipeline import watch
        if args.if_new_span:
            span = watch.pending_span(config)
            if span is None:
                print(f"no new span in {config.data_root} (stored: {watch.stored_spans(config.span_store_dir)})",
                      file=sys.stderr)
                return 0
            return run_once()
        return watch.watch(config, run_once, args.interval, args.max_polls, args.max_runs)
    return run_once()


def cmd_download(args: argparse.Namespace) -> int:
    from pipeline import download

    written = download.download(Path(args.out), mirror=args.mirror)  # DownloadError: exit 1, run_command
    for split, path in written.items():
        print(f"{split}: {path}")
    print(f"now run: fmnist run --data {args.out}")
    return 0


def register_pipeline_commands(sub: argparse._SubParsersAction) -> None:
    """`fmnist run` and `fmnist data download`."""
    from pipeline.download import MIRROR

    run = sub.add_parser("run", help="run the TFX pipeline locally (LocalDagRunner)")
    add_config_arguments(run, "default")
    spans = run.add_argument_group("continuous training (span layout, README \"Continuous training\")")
    spans.add_argument("--watch", nargs="?", const="", metavar="DATA",
                       help="poll DATA (or --data) for a new span-<N>/ and run the pipeline for each "
                            "(bounded by --max-polls / --max-runs); implies spans=true")
    spans.add_argument("--if-new-span", action="store_true",
                       help="run only if the newest span is not in the span store yet (for cron); implies spans=true")
    spans.add_argument("--interval", type=float, default=60.0, help="--watch: seconds between polls (60)")
    spans.add_argument("--max-polls", type=int, default=1440, help="--watch: polls before exiting (1440)")
    spans.add_argument("--max-runs", type=int, default=100, help="--watch: runs before exiting (100)")
    run.set_defaults(func=cmd_run)

    data = sub.add_parser("data", help="data set utilities").add_subparsers(dest="data_command", required=True)
    dl = data.add_parser("download", help="fetch the official IDX files and convert them to CSV")
    dl.add_argument("--out", default="data/fashion-mnist", help="directory for the CSVs")
    dl.add_argument("--mirror", default=MIRROR)
    dl.set_defaults(func=cmd_download)


def register_serve(sub: argparse._SubParsersAction) -> None:
    from schema.contract import SERVING_INTER_OP_THREADS, SERVING_INTRA_OP_THREADS
    from serving.cli import register
    register(sub, default_op_parallelism=(SERVING_INTRA_OP_THREADS, SERVING_INTER_OP_THREADS))


def register_clients(sub: argparse._SubParsersAction) -> None:
    from pipeline.clients.serving_cli import register
    register(sub)


def register_kubeflow(sub: argparse._SubParsersAction) -> None:
    # The command table names every package's commands; this is the one import of kubeflow/
    # from pipeline/ (tests/unit/test_layers.py allows exactly this one).
    from kubeflow.cli import register
    register(sub)


def register_report(sub: argparse._SubParsersAction) -> None:
    from pipeline.report_cli import register
    register(sub)


def register_monitor(sub: argparse._SubParsersAction) -> None:
    from pipeline.monitoring.monitor_cli import register
    register(sub)


# The sub-commands, in --help order. Each registrar imports its module only when the parser is
# built; none of those modules imports TensorFlow at import time.
SUBCOMMANDS = (register_pipeline_commands, register_serve, register_clients, register_kubeflow,
               register_report, register_monitor)


# Sub-commands that load TensorFlow (quiet mode imports it up front, with its start-up lines hidden).
# `kubeflow compile` builds the pipeline's TFX components, and TFX imports TensorFlow.
TENSORFLOW_COMMANDS = frozenset({"run", "serve", "serve-demo", "predict", "monitor", "kubeflow"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fmnist", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show TFX's own logging and TensorFlow's native log lines")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in SUBCOMMANDS:
        register(sub)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Give every sub-command's parser its own name as the `prog` default ("fmnist models promote"),
    so run_command can prefix an error with the command that failed; the innermost parser's default
    wins, as argparse applies a sub-parser's defaults after its parent's."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.set_defaults(prog=child.prog)
                _name_commands(child)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; the one place the project's errors become a status.

    Any FmnistError (components/errors.py: bad config or data, an unusable server, a failed
    download, ...) is one line `<command>: <message>` on stderr and the error's exit_code; anything
    else is a bug and keeps its traceback."""
    try:
        return args.func(args)
    except FmnistError as e:
        print(f"{getattr(args, 'prog', 'fmnist')}: {e}", file=sys.stderr)
        return e.exit_code


def main(argv: list[str] | None = None) -> int:
    from pipeline import quiet

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if not args.verbose:
        quiet.quiet_by_default(uses_tensorflow=args.command in TENSORFLOW_COMMANDS)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
