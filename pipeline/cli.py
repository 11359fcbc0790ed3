"""`fmnist`: the one command users type. Sub-commands import TensorFlow only when they need it."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from pipeline.config import PRESETS, ConfigError, PipelineConfig, load_config

log = logging.getLogger("fmnist")


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    overrides = _overrides(args.set or [])
    if args.data:
        overrides["data_root"] = str(Path(args.data).resolve())
    if args.output:
        overrides["output_root"] = str(Path(args.output).resolve())
    return load_config(args.preset, args.config, overrides)


def _add_config_args(p: argparse.ArgumentParser, default_preset: str) -> None:
    p.add_argument("--preset", default=default_preset, choices=sorted(PRESETS),
                   help=f"named settings (default: {default_preset})")
    p.add_argument("--data", help="directory with a training and a test CSV (Kaggle layout, .csv or .csv.gz); "
                                  "default: the committed sample")
    p.add_argument("--config", help="YAML file of config fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config field")
    p.add_argument("--output", help="output root (pipeline artifacts, metadata, serving dir)")


def newest_span_dir(data_root: str) -> str:
    """data_root/span-<highest N> (span mode), or a ConfigError saying what the layout must be."""
    import re

    spans = sorted((int(m.group(1)), name) for name in (os.listdir(data_root) if os.path.isdir(data_root) else [])
                   if (m := re.fullmatch(r"span-([0-9]{1,18})", name)) and os.path.isdir(os.path.join(data_root, name)))
    if not spans:
        raise ConfigError(f"spans=true but {data_root} has no span-<N>/ directory; the layout is "
                          "DATA/span-1/*_train.csv + *_test.csv, DATA/span-2/..., DATA/holdout/*_test.csv")
    return os.path.join(data_root, spans[-1][1])


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline import runner

    watching = getattr(args, "watch", None) is not None or getattr(args, "if_new_span", False)
    if getattr(args, "watch", None):
        args.data = args.watch          # `fmnist run --watch DATA`
    config = config_from_args(args)
    if watching and not config.spans:   # watching only makes sense for the span layout
        config = config.replace(spans=True)
    if "://" not in config.data_root and not watching:  # fail in a second, not after TensorFlow's start-up
        from components.split_files import DataSelectionError, select_splits
        try:
            root = config.data_root
            if config.spans:  # the newest span directory is what ExampleGen will read
                root = newest_span_dir(config.data_root)
            select_splits(root, {"train": config.train_pattern, "test": config.test_pattern},
                          config.data_input_options()["file_counts"])
        except DataSelectionError as e:
            raise ConfigError(str(e)) from None

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

    try:
        written = download.download(Path(args.out), mirror=args.mirror)
    except download.DownloadError as e:
        print(f"fmnist data download: {e}", file=sys.stderr)
        return 1
    for split, path in written.items():
        print(f"{split}: {path}")
    print(f"now run: fmnist run --data {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fmnist", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="show TFX's own logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the TFX pipeline locally (LocalDagRunner)")
    _add_config_args(run, "default")
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
    from pipeline.download import MIRROR
    dl.add_argument("--mirror", default=MIRROR)
    dl.set_defaults(func=cmd_download)

    for register in _extensions:
        register(sub)
    return parser


# Other packages (serving, kubeflow, reports) add their sub-commands here.
_extensions: list[Callable[[argparse._SubParsersAction], None]] = []


def _load_extensions() -> None:
    if _extensions:  # main() may run more than once in one process (tests)
        return
    for module in ("serving.cli", "pipeline.serving_cli", "kubeflow.cli", "pipeline.report_cli",
                   "pipeline.monitor_cli"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        _extensions.append(mod.register)


def main(argv: list[str] | None = None) -> int:
    _load_extensions()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not args.verbose:
        _quiet_tfx()
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"fmnist: {e}", file=sys.stderr)
        return 2


_NOISE = ("ZetaSQL", "property_predicate is not supported")


def _drop_known_noise(record: logging.LogRecord) -> bool:
    """TFX 1.21 warns on every MLMD query that its optional ZetaSQL backend is absent."""
    return not any(n in record.getMessage() for n in _NOISE)


def _quiet_tfx() -> None:
    """TFX logs every artifact at INFO; keep warnings, and our own progress display."""
    from absl import logging as absl_logging

    # Through absl's verbosity flag, not the logger: a later absl flags parse would reset the
    # logger's level and silence the 'Component X is running' lines the progress display reads.
    absl_logging.set_verbosity(absl_logging.INFO)
    for name in ("tensorflow", "apache_beam"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("absl").addFilter(_drop_known_noise)
    # absl's own handler would print everything at INFO; only our progress handler should.
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
