"""`fmnist monitor` and `fmnist models promote|rollback`: watching and steering the served model."""
from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path
from typing import Any, Callable


def cmd_monitor(args: argparse.Namespace) -> int:
    from pipeline.config import SCHEMA_DIR, load_config

    config = load_config(args.preset, overrides={"output_root": str(Path(args.output).resolve())}
                         if args.output else None)
    metadata = args.metadata or config.metadata_path
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or os.path.join(config.output_root, "monitor", stamp)
    from pipeline.monitoring.monitor import monitor

    result = monitor(args.logs, metadata, out, args.schema or str(SCHEMA_DIR / "schema.pbtxt"),
                     model=args.model, version=args.version)  # MonitorError: exit 2 (pipeline/cli.py)
    print(f"model {args.model} version {result.version}: {result.rows} logged images vs. training data "
          f"({result.training.statistics_uri})")
    for m in result.measurements:
        print(f"  {m.feature:<17} {m.measure:<27} {m.value:8.4f}  threshold {m.threshold:g}"
              f"{'  CROSSED' if m.crossed else ''}")
    for alarm in result.alarms:
        print(f"ALARM {alarm}")
    print(f"{'ALARM' if result.alarms else 'OK'}; report {os.path.join(out, 'report.html')}, anomalies "
          f"{os.path.join(out, 'anomalies')}")
    return result.exit_code


def _move_label(args: argparse.Namespace, move: Callable[..., str]) -> int:
    """Run one label move, reloading `--server` if given; print what moved and how it is served."""
    from pipeline.monitoring import model_labels

    def reload(server_config: Any) -> None:
        model_labels.reload_server(args.server, server_config, args.config)

    started = time.monotonic()
    moved = move(model_labels, reload if args.server else None)  # LabelError: exit 2 (pipeline/cli.py)
    how = (f"server {args.server} serves it ({time.monotonic() - started:.1f} s)" if args.server
           else "a server polling the file picks it up")
    print(f"{args.label}: {moved} in {args.config}; {how}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    def move(model_labels: Any, reload: Any) -> str:
        _, previous = model_labels.promote(args.config, args.version, args.label, args.model, args.base_path,
                                           reload=reload)
        return f"{previous if previous is not None else '(none)'} -> {args.version}"
    return _move_label(args, move)


def cmd_rollback(args: argparse.Namespace) -> int:
    def move(model_labels: Any, reload: Any) -> str:
        _, current, target = model_labels.rollback(args.config, args.label, args.model, reload=reload)
        return f"{current} -> {target} (rolled back)"
    return _move_label(args, move)


def register(sub: argparse._SubParsersAction) -> None:
    from pipeline.config import PRESETS

    mon = sub.add_parser("monitor", help="compare logged served requests with the served model's training data")
    mon.add_argument("--logs", required=True, help="directory of request log files (the server's logging_config)")
    mon.add_argument("--metadata", help="ML Metadata SQLite file of the pipeline that pushed the model "
                                        "(default: the preset's outputs/metadata/<pipeline>/metadata.db)")
    mon.add_argument("--preset", default="default", choices=sorted(PRESETS), help="to find the default --metadata")
    mon.add_argument("--output", help="output root of the pipeline run (to find the default --metadata)")
    mon.add_argument("--model", default="fmnist", help="model name in the log records")
    mon.add_argument("--version", type=int, help="served version to check (default: the one most logged)")
    mon.add_argument("--schema", help="schema with the SERVING thresholds (default: schema/schema.pbtxt)")
    mon.add_argument("--out", help="where the Examples, statistics, anomalies and report go "
                                   "(default: <output root>/monitor/<UTC time>)")
    mon.set_defaults(func=cmd_monitor)

    models = sub.add_parser("models", help="move the stable/canary version labels of the served model")
    msub = models.add_subparsers(dest="models_command", required=True)
    for name, func, text in (("promote", cmd_promote, "point a label at VERSION"),
                             ("rollback", cmd_rollback, "point the label back at its previous version")):
        p = msub.add_parser(name, help=text)
        if name == "promote":
            p.add_argument("version", type=int, metavar="VERSION")
            p.add_argument("--base-path", help="model base path, to create --config when it does not exist")
        p.add_argument("--label", default="stable", choices=("stable", "canary"))
        p.add_argument("--config", default="models.config",
                       help="the server's --model_config_file (text-format ModelServerConfig)")
        p.add_argument("--model", help="model name in the config (default: its only model)")
        p.add_argument("--server", help="host:port of the running server: reload it now "
                                        "(HandleReloadConfigRequest) instead of waiting for its config poll")
        p.set_defaults(func=func)
