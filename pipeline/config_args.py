"""The command-line options every pipeline sub-command shares (`--preset --data --config --set
--output`) and the PipelineConfig they give; used by `fmnist run`, `report` and `kubeflow compile`."""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import PRESETS, ConfigError, PipelineConfig, load_config


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`--set key=value` pairs as a dict; a pair without '=' is a ConfigError."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    overrides = parse_overrides(args.set or [])
    if args.data:
        overrides["data_root"] = str(Path(args.data).resolve())
    if args.output:
        overrides["output_root"] = str(Path(args.output).resolve())
    return load_config(args.preset, args.config, overrides)


def add_config_arguments(p: argparse.ArgumentParser, default_preset: str) -> None:
    p.add_argument("--preset", default=default_preset, choices=sorted(PRESETS),
                   help=f"named settings (default: {default_preset})")
    p.add_argument("--data", help="directory with a training and a test CSV (Kaggle layout, .csv or .csv.gz); "
                                  "default: the committed sample")
    p.add_argument("--config", help="YAML file of config fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config field")
    p.add_argument("--output", help="output root (pipeline artifacts, metadata, serving dir)")
