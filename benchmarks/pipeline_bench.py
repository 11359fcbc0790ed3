"""Full-data pipeline benchmark: each component's wall time (from ML Metadata), the run's peak
memory, test accuracy overall and per class. Every figure in BENCHMARKS.md's pipeline section
comes from this script.

    make bench-pipeline        # = tools/with-stack python benchmarks/pipeline_bench.py

Each repetition runs the whole pipeline from scratch (fresh output root, so nothing is cached) in
a child process, so peak RSS is that run's own high-water mark.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import ROOT, write_result


def one_run(args: argparse.Namespace) -> dict:
    """Runs in the child: the pipeline, then a JSON line with the figures."""
    from pipeline import runner
    from pipeline.config import load_config

    overrides = {"data_root": args.data, "output_root": args.output}
    for pair in args.set or []:
        key, value = pair.split("=", 1)
        overrides[key] = value
    config = load_config(args.preset, overrides=overrides)
    started = time.monotonic()
    summary = runner.run_local(config, progress=False)
    return {
        "preset": args.preset, "overrides": args.set or [],
        "wall_seconds": time.monotonic() - started,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
        "components": {c.name: round(c.seconds, 1) for c in summary.components},
        "accuracy": summary.metrics.get("overall", {}).get("sparse_categorical_accuracy"),
        "per_class": {k: v.get("sparse_categorical_accuracy") for k, v in summary.metrics.items()
                      if k.startswith("label=")},
        "blessed": summary.blessed, "pushed_to": summary.pushed_to, "failures": summary.failures,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    p.add_argument("--preset", default="default")
    p.add_argument("--set", action="append", help="config override key=value")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "pipeline.json"))
    p.add_argument("--output", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(one_run(args)), flush=True)
        return 0
    results = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as out:
            cmd = [sys.executable, __file__, "--child", "--data", args.data, "--preset", args.preset,
                   "--output", out] + sum((["--set", s] for s in args.set or []), [])
            print(f"run {i + 1}/{args.repeat}: {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(proc.stdout[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(line[len("RESULT "):]))
            print(json.dumps(results[-1], indent=1), file=sys.stderr)
    names = list(results[0]["components"])
    report = {
        "runs": results,
        "median_component_seconds": {n: statistics.median(r["components"].get(n, 0) for r in results)
                                     for n in names},
        "median_accuracy": statistics.median(r["accuracy"] or 0 for r in results),
        "median_peak_rss_gb": statistics.median(r["peak_rss_gb"] for r in results),
    }
    write_result(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
