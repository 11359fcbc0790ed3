"""The CSV reader before and after a change, side by side: seconds and peak memory to read a file.

    git show main:components/csv_table.py > outputs/bench/baseline_csv_table.py
    tools/with-stack python benchmarks/csv_reader_bench.py \
        --baseline-file outputs/bench/baseline_csv_table.py --files FILE...

Each read runs in a fresh child process (so its peak resident memory, ru_maxrss, is its own),
versions alternating round by round (the machine's load drifts). The baseline reads with its
`read_table` (the whole file as one table); the current version iterates `CsvReader` chunk by
chunk, keeping nothing -- what ExampleGen does with it. Medians over --rounds go to --json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time

from benchmarks.common import ROOT, write_result


def read_once(version: str, baseline_file: str, path: str) -> dict[str, float]:
    """Runs in the child: one read of `path`, its seconds and the process's peak RSS."""
    if version == "baseline":
        spec = importlib.util.spec_from_file_location("baseline_csv_table", baseline_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module          # dataclasses look their module up
        spec.loader.exec_module(module)
        started = time.monotonic()
        rows = len(module.read_table(path).values)
    else:
        from components.csv_table import CsvReader
        started = time.monotonic()
        rows = sum(len(chunk.values) for chunk in CsvReader(path))
    seconds = time.monotonic() - started
    return {"rows": rows, "seconds": seconds,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--baseline-file", required=True)
    p.add_argument("--files", nargs="+", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "csv_reader.json"))
    p.add_argument("--child", nargs=2, metavar=("VERSION", "FILE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(read_once(args.child[0], args.baseline_file, args.child[1])))
        return 0
    results = {}
    for path in args.files:
        runs: dict[str, list[dict[str, float]]] = {"baseline": [], "current": []}
        for r in range(args.rounds):
            for version in (("baseline", "current") if r % 2 == 0 else ("current", "baseline")):
                out = subprocess.run([sys.executable, __file__, "--baseline-file", args.baseline_file,
                                      "--files", path, "--child", version, path],
                                     check=True, capture_output=True, text=True).stdout
                runs[version].append(json.loads(out.strip().splitlines()[-1]))
                print(f"{path} round {r + 1} {version}: {runs[version][-1]}", file=sys.stderr, flush=True)
        assert runs["baseline"][0]["rows"] == runs["current"][0]["rows"], runs
        medians = {v: {k: statistics.median(x[k] for x in rs) for k in ("seconds", "peak_rss_gb")}
                   for v, rs in runs.items()}
        results[path] = {"rows": runs["current"][0]["rows"], "medians": medians,
                         "current_over_baseline": {k: medians["current"][k] / medians["baseline"][k]
                                                   for k in ("seconds", "peak_rss_gb")}}
    write_result(args.json, {"rounds": args.rounds, "files": results}, echo=False)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
