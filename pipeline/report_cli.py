"""`fmnist report`: where the latest run's HTML report is (and optionally open it)."""
from __future__ import annotations

import argparse
import sys

from pipeline.config_args import add_config_arguments, config_from_args


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline import runner

    config = config_from_args(args)
    summary = runner.summarize(config)
    if not summary.report_path:
        print(f"no report yet for pipeline '{config.pipeline_name}' under {config.output_root}; "
              "run `fmnist run` first", file=sys.stderr)
        return 1
    print(summary.report_path)
    if args.open:
        import webbrowser
        webbrowser.open("file://" + summary.report_path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="print the path of the latest run's HTML report")
    add_config_arguments(p, "default")
    p.add_argument("--open", action="store_true", help="open it in a browser")
    p.set_defaults(func=cmd_report)
