"""The Trainer alone on one Transform output: streamed input vs. holding the split in memory.

    tools/with-stack python benchmarks/scale.py --data-only --factors 10 --keep-output /tmp/fmnist-scale/run10
    tools/with-stack python benchmarks/trainer_memory.py --pipeline-root /tmp/fmnist-scale/run10/pipelines/fmnist

Runs components.training.trainer.run_fn in a fresh child process per variant (one epoch of the `fast`
preset by default) and reports its wall time and peak RSS. `held` reproduces the previous input's
memory behaviour with the same code: the whole split cached and a shuffle buffer as large as the
split (cache_max_mb and shuffle_buffer set beyond the data's size).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks.common import ROOT, write_result

VARIANTS = {
    "streamed (defaults)": {},
    "held (whole split cached, split-sized shuffle buffer)": {"cache_max_mb": 10 ** 6, "shuffle_buffer": 10 ** 8},
}


def newest(pattern: str) -> str:
    found = sorted(glob.glob(pattern), key=os.path.getmtime)
    if not found:
        raise SystemExit(f"nothing matches {pattern}")
    return found[-1]


def child(args: argparse.Namespace) -> dict:
    from tfx.components.trainer.fn_args_utils import FnArgs

    from components.training.trainer import run_fn
    from pipeline.config import load_config

    cfg = load_config(args.preset, overrides={"epochs": args.epochs}).training.to_custom_config()
    cfg.update(json.loads(args.overrides))
    examples = newest(os.path.join(args.pipeline_root, "Transform", "transformed_examples", "*"))
    graph = newest(os.path.join(args.pipeline_root, "Transform", "transform_graph", "*"))
    from components.training import train_input

    started = time.monotonic()
    rows = train_input.count_records(train_input.shard_files([os.path.join(examples, "Split-train", "*")]))
    count_seconds = time.monotonic() - started
    with tempfile.TemporaryDirectory() as out:
        started = time.monotonic()
        run_fn(FnArgs(train_files=[os.path.join(examples, "Split-train", "*")],
                      eval_files=[os.path.join(examples, "Split-test", "*")],
                      transform_output=graph, serving_model_dir=os.path.join(out, "model"),
                      model_run_dir=os.path.join(out, "run"), custom_config=cfg))
        wall = time.monotonic() - started
    return {"seconds": round(wall, 1), "records": rows, "count_pass_seconds": round(count_seconds, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline-root", required=True)
    p.add_argument("--preset", default="fast")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "trainer_memory.json"))
    p.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0
    results = {}
    for name, overrides in VARIANTS.items():
        cmd = [sys.executable, __file__, "--child", "--pipeline-root", args.pipeline_root, "--preset", args.preset,
               "--epochs", str(args.epochs), "--overrides", json.dumps(overrides)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-3000:], file=sys.stderr)
            raise SystemExit(f"{name}: failed (exit {proc.returncode})")
        results[name] = json.loads(line[len("RESULT "):])
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    write_result(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
