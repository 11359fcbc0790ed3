"""InfraValidator cost and the latency it measures: the step's executor run directly on the model
and test examples of the latest sample run, several rounds, medians.

    tools/with-stack python benchmarks/infra_validation.py [--preset sample] [--rounds 3]
    (= make bench-infra; needs one `fmnist run --preset sample` first)

Reports per round the step's wall time (server start, model load, the Predict + Classify checks and
the latency gate's 200 single-image calls) and the p50/p99 the gate saw, then the medians.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from pipeline import runner
from pipeline.config import load_config
from schema import contract


def validate_once(model_uri: str, examples_uri: str, config, workdir: str) -> dict:
    from tfx import types
    from tfx.dsl.components.base import base_executor
    from tfx.types import standard_artifacts

    from components.infra_validator import LocalInfraValidator

    model, examples = standard_artifacts.Model(), standard_artifacts.Examples()
    model.uri, examples.uri = model_uri, examples_uri
    examples.split_names = '["train", "test"]'
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = os.path.join(workdir, "blessing")
    os.makedirs(blessing.uri)
    component = LocalInfraValidator(
        model=types.Channel(type=standard_artifacts.Model), examples=types.Channel(type=standard_artifacts.Examples),
        model_name=config.model_name, split="test", num_examples=config.infra_num_examples,
        latency_p99_ms=config.infra_latency_p99_ms, latency_requests=config.infra_latency_requests)
    executor = component.executor_spec.executor_class(
        base_executor.BaseExecutor.Context(tmp_dir=os.path.join(workdir, "tmp"), unique_id="bench"))
    start = time.perf_counter()
    executor.Do({"model": [model], "examples": [examples]}, {"blessing": [blessing]}, component.exec_properties)
    return {"seconds": time.perf_counter() - start,
            "blessed": blessing.get_int_custom_property("blessed"),
            "server": blessing.get_string_custom_property("server"),
            "p50": blessing.get_float_custom_property("latency_p50_ms"),
            "p99": blessing.get_float_custom_property("latency_p99_ms")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="sample")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = load_config(args.preset)
    summary = runner.summarize(config)
    trainer, example_gen = summary.component("Trainer"), summary.component(contract.EXAMPLE_GEN)
    if not trainer or not example_gen or not trainer.outputs.get("model"):
        print(f"no completed {args.preset} run in {config.output_root}: run `fmnist run --preset {args.preset}` first")
        return 2
    model_uri, examples_uri = trainer.outputs["model"][0].uri, example_gen.outputs["examples"][0].uri
    results = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as workdir:
            r = validate_once(model_uri, examples_uri, config, workdir)
        results.append(r)
        print(f"round {i + 1}: {r['seconds']:.1f} s, blessed={r['blessed']}, {r['server']}, "
              f"p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms", flush=True)
    print(f"median of {args.rounds}: {statistics.median(r['seconds'] for r in results):.1f} s per validation, "
          f"p50 {statistics.median(r['p50'] for r in results):.2f} ms, "
          f"p99 {statistics.median(r['p99'] for r in results):.2f} ms "
          f"({config.infra_latency_requests} single-image gRPC Predict calls, {results[0]['server']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
