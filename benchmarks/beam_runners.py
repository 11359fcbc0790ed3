"""DirectRunner modes side by side on the full data: the data components (ExampleGen, statistics,
schema, validation, Transform) under `in_memory` and under `multi_processing` with 2 workers.

    make bench-beam     # = tools/with-stack python benchmarks/beam_runners.py

Each mode runs in a fresh output root (nothing cached); times are read from ML Metadata. Modes
alternate within a round, so both see the same machine load.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from benchmarks.common import ROOT, data_pipeline, medians as median_rounds, write_result

MODES = {
    "in_memory": ("--direct_running_mode=in_memory", "--direct_num_workers=1"),
    "multi_processing x2": ("--direct_running_mode=multi_processing", "--direct_num_workers=2"),
}


def run_data_components(data: str, beam_args: tuple[str, ...], out: str) -> dict[str, float]:
    from tfx import v1 as tfx

    from pipeline import runner
    from pipeline.config import load_config

    config = load_config("default", overrides={"data_root": data, "output_root": out, "beam_args": beam_args,
                                               "enable_cache": False})
    pipeline = data_pipeline(config)
    started = time.monotonic()
    with runner.run_scratch():  # the executors' leftovers (a TFX sdist per Beam step) go with it
        tfx.orchestration.LocalDagRunner().run(pipeline)
    wall = time.monotonic() - started
    summary = runner.summarize(config)
    times = {c.name: round(c.seconds, 1) for c in summary.components}
    times["total wall"] = round(wall, 1)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "beam_runners.json"))
    args = p.parse_args()
    rounds: dict[str, list[dict]] = {m: [] for m in MODES}
    for r in range(args.repeat):
        for mode, beam_args in MODES.items():
            with tempfile.TemporaryDirectory(prefix="fmnist-beam-") as out:
                rounds[mode].append(run_data_components(args.data, beam_args, out))
            print(f"round {r + 1} {mode}: {rounds[mode][-1]}", file=sys.stderr, flush=True)
    medians = median_rounds(rounds)
    write_result(args.json, {"medians": medians, "rounds": rounds}, echo=False)
    print(json.dumps(medians, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
