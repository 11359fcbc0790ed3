"""FastCsvExampleGen before and after a change, side by side on the full data (BENCHMARKS.md).

    make bench-data-input BASELINE=main
    # = git show main:components/data_input/csv_example_gen.py > outputs/bench/baseline_csv_example_gen.py
    #   git show main:components/data_input/csv_table.py > outputs/bench/baseline_csv_table.py
    #   tools/with-stack python benchmarks/data_input_bench.py --baseline-rev main \
    #       --baseline-file outputs/bench/baseline_csv_example_gen.py \
    #       --baseline-table-file outputs/bench/baseline_csv_table.py

The baseline executor and its CSV reader (those files; the stack has no git) are loaded into
temporary modules -- the executor importing the baseline's reader, not the checkout's -- so both
versions run in this one process, alternating round by round (the machine's load drifts;
alternation spreads it over both). Two figures per version:
* `parse`: reading both CSVs into the int64 table (the code the change touched), in-process;
* `example_gen`: the whole component under LocalDagRunner (ExampleGen only, fresh output root,
  cache off): Beam, parsing, encoding, writing the gzipped TFRecords, and for the current
  version the split checks, image hashes and data report.
Medians over --rounds, and current / baseline ratios.

`--variants` instead times the current parser on the training CSV as other exports write it
(BOM + CRLF, every cell quoted, a space after every comma): the cost of the slower,
decoration-removing path next to the plain one.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, write_result


def _source(rev: str, name: str) -> str:
    """components/data_input/<name>.py as of `rev`; before the CSV reader was grouped there (issue
    29), components/<name>.py."""
    for repo_path in (f"components/data_input/{name}.py", f"components/{name}.py"):
        done = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{repo_path}"], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout
    raise SystemExit(f"{rev}: has neither components/data_input/{name}.py nor components/{name}.py")


def _load_module(name: str, rev: str, module: str, file: str | None, tmp: str):
    """The project's `module` as of `rev` (or `file`) imported as module `name` from `tmp`."""
    source = Path(file).read_text() if file else _source(rev, module)
    path = Path(tmp) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded          # dataclasses and Beam's pickling look modules up by name
    spec.loader.exec_module(loaded)
    return loaded


# The names a baseline's csv_example_gen may import its csv_table by (before and after issue 29).
TABLE_MODULES = ("components.data_input.csv_table", "components.csv_table")


def load_baseline(rev: str, file: str | None, table_file: str | None, tmp: str):
    """(the baseline csv_example_gen, its csv_table), the executor bound to that csv_table: while it
    is imported, the csv_table module resolves to the baseline reader (then the checkout's again)."""
    sys.path.insert(0, tmp)
    table = _load_module("baseline_csv_table", rev, "csv_table", table_file, tmp)
    saved = {name: sys.modules.get(name) for name in TABLE_MODULES}
    sys.modules.update(dict.fromkeys(TABLE_MODULES, table))
    try:
        return _load_module("baseline_csv_example_gen", rev, "csv_example_gen", file, tmp), table
    finally:
        for name, module in saved.items():
            if module is not None:
                sys.modules[name] = module
            else:
                del sys.modules[name]


def example_gen_seconds(component, out: str) -> float:
    from tfx import v1 as tfx

    from pipeline import runner

    pipeline = tfx.dsl.Pipeline(
        pipeline_name="bench", pipeline_root=f"{out}/root", components=[component], enable_cache=False,
        metadata_connection_config=runner.metadata_config(f"{out}/metadata.db"),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    started = time.monotonic()
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return time.monotonic() - started


def time_variants(args: argparse.Namespace) -> int:
    import re

    from components.data_input import csv_table

    path = str(sorted(Path(args.data).glob("*_train.csv*"))[0])
    raw = csv_table.read_bytes(path)
    header, _, body = raw.partition(b"\n")
    variants = {
        "plain": raw,
        "BOM + CRLF": csv_table.BOM + raw.replace(b"\n", b"\r\n"),
        "every cell quoted": header + b"\n" + re.sub(rb"([0-9]+)", rb'"\1"', body),
        "space after every comma": header + b"\n" + body.replace(b",", b", "),
    }
    reference = csv_table.parse_table(path, raw).values
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for name, data in variants.items():
            started = time.monotonic()
            table = csv_table.parse_table(path, data)
            seconds[name].append(time.monotonic() - started)
            assert (table.values == reference).all(), name
    medians = {v: statistics.median(x) for v, x in seconds.items()}
    result = {"file": path, "rounds": args.rounds, "medians_s": medians,
              "over_plain": {v: m / medians["plain"] for v, m in medians.items()}}
    out = Path(args.json).with_name("data_input_variants.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    p.add_argument("--baseline-rev", default="main", help="git revision of the baseline (label only "
                   "when --baseline-file is given)")
    p.add_argument("--baseline-file", help="the baseline's components/data_input/csv_example_gen.py")
    p.add_argument("--baseline-table-file", help="the baseline's components/data_input/csv_table.py")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "data_input.json"))
    p.add_argument("--variants", action="store_true", help="time export variants of the training CSV")
    args = p.parse_args()
    if args.variants:
        return time_variants(args)

    from tfx import v1 as tfx
    from tfx.dsl.components.base import executor_spec

    from components.custom_components import FastCsvExampleGen
    from components.data_input import csv_example_gen, csv_table
    from pipeline.config import PipelineConfig

    tmp = tempfile.mkdtemp(prefix="fmnist-data-bench-")
    baseline, baseline_table = load_baseline(args.baseline_rev, args.baseline_file, args.baseline_table_file, tmp)

    class BaselineCsvExampleGen(tfx.components.CsvExampleGen):
        EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(baseline.Executor)

    config = PipelineConfig(data_root=args.data)
    files = sorted(str(f) for f in Path(args.data).glob("*.csv*"))

    def component(version: str):
        if version == "baseline":
            return BaselineCsvExampleGen(input_base=args.data, input_config=tfx.proto.Input(splits=[
                tfx.proto.Input.Split(name="train", pattern="*train*.csv*"),
                tfx.proto.Input.Split(name="test", pattern="*test*.csv*")]))
        return FastCsvExampleGen(input_base=args.data, input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name="train", pattern=config.train_pattern),
            tfx.proto.Input.Split(name="test", pattern=config.test_pattern)]),
            custom_config=csv_example_gen.input_options(**config.data_input_options()))

    def parse(version: str) -> float:
        started = time.monotonic()
        for f in files:
            if version == "baseline":
                baseline_table.read_table(f)
            else:
                csv_table.read_table(f)
        return time.monotonic() - started

    figures: dict[str, dict[str, list[float]]] = {v: {"parse": [], "example_gen": []}
                                                  for v in ("baseline", "current")}
    for r in range(args.rounds):
        for version in (("baseline", "current") if r % 2 == 0 else ("current", "baseline")):
            figures[version]["parse"].append(parse(version))
            with tempfile.TemporaryDirectory(prefix="fmnist-data-bench-") as out:
                figures[version]["example_gen"].append(example_gen_seconds(component(version), out))
            print(f"round {r + 1} {version}: parse {figures[version]['parse'][-1]:.2f} s, "
                  f"example_gen {figures[version]['example_gen'][-1]:.2f} s", file=sys.stderr, flush=True)
    medians = {v: {k: statistics.median(x) for k, x in f.items()} for v, f in figures.items()}
    ratios = {k: medians["current"][k] / medians["baseline"][k] for k in medians["current"]}
    result = {"baseline_rev": args.baseline_rev, "data": args.data, "rounds": args.rounds,
              "medians_s": medians, "current_over_baseline": ratios, "all_s": figures}
    write_result(args.json, result, echo=False)
    print(json.dumps({"medians_s": medians, "current_over_baseline": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
