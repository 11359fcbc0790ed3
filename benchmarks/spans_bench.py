"""Continuous training on the full data split into spans: time to a retrained, pushed model with a
warm start against a cold start, and the accuracy of both (BENCHMARKS.md "Continuous training").

    make bench-spans      # = tools/with-stack python benchmarks/spans_bench.py --data ../shared/data/fashion-mnist

1. The full CSVs are dealt per class into span-1 and span-2 (30,000 training rows each) and, of
   the 10,000 test rows, span-1 / span-2 / holdout in turn (tools/make_span_sample.py's `deal`);
   written under --work (never committed).
2. Span 1 is run cold into an output root and pushed.
3. That output root (ML Metadata, span store, serving directory) is copied, so both span-2 runs
   start from the very same state; span 2 is then run once with warm_start=true and once with
   warm_start=false, in alternating order per round, each in its own child process.
Reported: the whole span-2 run's wall time (span arrives -> pushed model), the Trainer's own time,
epochs trained, accuracy on span 2's test split + the holdout, the served model's accuracy on the
same rows (the Evaluator's baseline), and whether it was pushed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def make_spans(data: Path, work: Path) -> Path:
    from make_span_sample import NAMES, _rows, _write, deal

    target = work / "data"
    if (target / "holdout" / NAMES["test"]).exists():
        return target
    header, train = _rows(data / NAMES["train"])
    for part, rows in deal(train, ["span-1", "span-2"]).items():
        _write(target / "staged" / part / NAMES["train"], header, rows)
    header, test = _rows(data / NAMES["test"])
    for part, rows in deal(test, ["span-1", "span-2", "holdout"]).items():
        _write(target / "staged" / part / NAMES["test"], header, rows)
    return target


def one_run(args: argparse.Namespace) -> dict:
    """In the child: one pipeline run, then a JSON line with the figures."""
    import tensorflow_model_analysis as tfma

    from components.training.warm_start import read_record
    from pipeline import runner
    from pipeline.config import load_config

    overrides = {"data_root": args.data_root, "output_root": args.output, "spans": "true"}
    overrides.update(dict(pair.split("=", 1) for pair in args.set or []))
    config = load_config(args.preset, overrides=overrides)
    started = time.monotonic()
    summary = runner.run_local(config, progress=False)
    wall = time.monotonic() - started
    overall = summary.metrics.get("overall", {})
    out = {"wall_seconds": wall, "failures": summary.failures, "pushed": bool(summary.pushed_to),
           "blessed": summary.blessed, "accuracy": overall.get("sparse_categorical_accuracy"),
           "examples": overall.get("example_count")}
    trainer = summary.component("Trainer")
    if trainer:
        out["trainer_seconds"] = trainer.seconds
        out["start"] = read_record(trainer.outputs["model_run"][0].uri)
        with open(Path(trainer.outputs["model_run"][0].uri) / "history.json") as f:
            out["epochs_trained"] = len(json.load(f)["loss"])
    try:
        result = tfma.load_eval_result(summary.evaluation_uri, model_name="baseline")
        overall = next(m for key, m in result.slicing_metrics if not key)
        out["served_accuracy"] = next(iter(overall.values()))[""]["sparse_categorical_accuracy"]["doubleValue"]
    except Exception:  # no baseline (span 1)
        out["served_accuracy"] = None
    return out


def child(data_root: Path, output: Path, preset: str, sets: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", "--data-root", str(data_root), "--output", str(output),
           "--preset", preset] + [a for s in sets for a in ("--set", s)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"child failed: {' '.join(cmd)}")
    return json.loads(lines[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    p.add_argument("--work", default="/tmp/fmnist-spans-bench")
    p.add_argument("--preset", default="fast")
    p.add_argument("--warm-epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threshold", type=float, default=0.85)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--json", help="write the results here too")
    p.add_argument("--child", action="store_true")
    p.add_argument("--data-root")
    p.add_argument("--output")
    args = p.parse_args()
    if args.child:
        print(json.dumps(one_run(args)))
        return

    work = Path(args.work)
    data = make_spans(Path(args.data), work)
    staged = data / "staged"
    # The threshold only has to let span 1's model be pushed, so that span 2 has a served model.
    sets = [f"accuracy_threshold={args.threshold}"] + args.set + [f"warm_start_epochs={args.warm_epochs}"]
    results: dict[str, list[dict]] = {"span1": [], "warm": [], "cold": []}
    for round_ in range(args.rounds):
        live = work / f"round-{round_}" / "data"
        shutil.rmtree(live.parent, ignore_errors=True)
        live.mkdir(parents=True)
        for part in ("span-1", "holdout"):
            shutil.copytree(staged / part, live / part)
        base = work / f"round-{round_}" / "after-span-1"
        results["span1"].append(child(live, base, args.preset, sets))
        print("span 1:", json.dumps(results["span1"][-1]), flush=True)
        shutil.copytree(staged / "span-2", live / "span-2")
        order = ["warm", "cold"] if round_ % 2 == 0 else ["cold", "warm"]
        for mode in order:
            out = work / f"round-{round_}" / mode
            shutil.copytree(base, out)
            # The copied metadata points at the first root's artifacts, which stay in place.
            r = child(live, out, args.preset, sets + [f"warm_start={'true' if mode == 'warm' else 'false'}"])
            results[mode].append(r)
            print(f"span 2 {mode}:", json.dumps(r), flush=True)

    def med(mode: str, key: str) -> float:
        values = [r[key] for r in results[mode] if r.get(key) is not None]
        return statistics.median(values) if values else float("nan")

    print(f"\n{args.rounds} round(s), preset {args.preset}, warm start {args.warm_epochs} epochs")
    print("| run | span-2 run wall time (s) | Trainer (s) | epochs | accuracy (span-2 test + holdout) "
          "| served model's accuracy | pushed |")
    for mode in ("warm", "cold"):
        rs = results[mode]
        print(f"| {mode} | {med(mode, 'wall_seconds'):.0f} | {med(mode, 'trainer_seconds'):.0f} | "
              f"{med(mode, 'epochs_trained'):.0f} | {med(mode, 'accuracy'):.4f} | {med(mode, 'served_accuracy'):.4f} | "
              f"{sum(r['pushed'] for r in rs)}/{len(rs)} |")
    print(f"span 1 (cold, first model): wall {med('span1', 'wall_seconds'):.0f} s, Trainer "
          f"{med('span1', 'trainer_seconds'):.0f} s, accuracy {med('span1', 'accuracy'):.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
