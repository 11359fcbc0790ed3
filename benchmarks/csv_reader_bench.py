"""The CSV reader before and after a change, side by side: seconds and peak memory to read a file.

    git show main:components/data_input/csv_table.py > outputs/bench/baseline_csv_table.py
    tools/with-stack python benchmarks/csv_reader_bench.py \
        --baseline-file outputs/bench/baseline_csv_table.py --files FILE...

Each read runs in a fresh child process (so its peak resident memory, ru_maxrss, is its own),
versions alternating round by round (the machine's load drifts). Each version iterates its
`CsvReader` chunk by chunk, keeping nothing -- what ExampleGen does with it (a baseline from
before the chunked reader reads with its `read_table`, the whole file as one table). A file the
baseline refuses is timed for the current version alone. Medians over --rounds go to --json.

    tools/with-stack python benchmarks/csv_reader_bench.py --write-layouts /tmp/layouts \
        --files ../shared/data/fashion-mnist/fashion-mnist_train.csv.gz

writes the file (plain) in other layouts to time next to it: `canonical.csv`, `label-last.csv`,
`shuffled.csv` (all 785 columns, seeded), `cr.csv` (CR-only line ends).
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
from pathlib import Path

from benchmarks.common import ROOT, write_result


def read_once(version: str, baseline_file: str, path: str) -> dict[str, float]:
    """Runs in the child: one read of `path`, its seconds and the process's peak RSS."""
    if version == "baseline":
        spec = importlib.util.spec_from_file_location("baseline_csv_table", baseline_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module          # dataclasses look their module up
        spec.loader.exec_module(module)
    else:
        from components.data_input import csv_table as module
    started = time.monotonic()
    try:
        rows = (sum(len(chunk.values) for chunk in module.CsvReader(path)) if hasattr(module, "CsvReader")
                else len(module.read_table(path).values))
    except module.CsvFormatError as e:
        return {"refused": str(e)[:300]}
    seconds = time.monotonic() - started
    return {"rows": rows, "seconds": seconds,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}


def write_layouts(source: str, out: str) -> list[str]:
    """`source` (plain or gzipped) rewritten plain in other layouts; returns their paths."""
    import random

    from components.data_input.csv_table import read_bytes

    raw = read_bytes(source)
    lines = raw.rstrip(b"\n").split(b"\n")
    width = lines[0].count(b",") + 1
    shuffled = list(range(width))
    random.Random(33).shuffle(shuffled)
    orders = {"label-last": list(range(1, width)) + [0], "shuffled": shuffled}
    Path(out).mkdir(parents=True, exist_ok=True)
    paths = {"canonical": raw, "cr": raw.replace(b"\n", b"\r")}
    paths.update({name: b"".join(b",".join(cells[i] for i in order) + b"\n"
                                 for cells in (line.split(b",") for line in lines))
                  for name, order in orders.items()})
    written = []
    for name, data in paths.items():
        path = Path(out) / f"{name}.csv"
        path.write_bytes(data)
        written.append(str(path))
    return written


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--baseline-file")
    p.add_argument("--write-layouts", metavar="DIR", help="write --files' first file in other layouts to DIR")
    p.add_argument("--files", nargs="+", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "csv_reader.json"))
    p.add_argument("--child", nargs=2, metavar=("VERSION", "FILE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(read_once(args.child[0], args.baseline_file, args.child[1])))
        return 0
    if args.write_layouts:
        print("\n".join(write_layouts(args.files[0], args.write_layouts)))
        return 0
    if not args.baseline_file:
        p.error("--baseline-file is required")
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
        read = {v: [x for x in rs if "rows" in x] for v, rs in runs.items()}
        assert len(read["current"]) == args.rounds, runs["current"]
        medians = {v: {k: statistics.median(x[k] for x in rs) for k in ("seconds", "peak_rss_gb")}
                   for v, rs in read.items() if rs}
        results[path] = {"rows": read["current"][0]["rows"], "medians": medians}
        if "baseline" in medians:
            assert read["baseline"][0]["rows"] == read["current"][0]["rows"], runs
            results[path]["current_over_baseline"] = {k: medians["current"][k] / medians["baseline"][k]
                                                      for k in ("seconds", "peak_rss_gb")}
        else:
            results[path]["baseline_refused"] = runs["baseline"][0]["refused"]
    write_result(args.json, {"rounds": args.rounds, "files": results}, echo=False)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
