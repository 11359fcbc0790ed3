"""One worker vs two (MultiWorkerMirroredStrategy, chief + worker on 127.0.0.1) on CPU: wall time
and test accuracy of the exported model, same data, settings and epochs (BENCHMARKS.md, issue 25).

    tools/with-stack python benchmarks/distributed_training.py --data data/sample
    tools/with-stack python benchmarks/distributed_training.py --data ../shared/data/fashion-mnist

The pipeline runs up to Transform once (into --out); then tests/e2e/train_worker.py -- the real
run_fn with the distributed tests' small model -- trains in one process, then as two processes
with the TF_CONFIG the Training Operator writes (kubeflow/tfjob.py, operator_tf_config) and the
replicas' addresses on 127.0.0.1. Both workers share the machine's cores, so on one machine two
workers measure the cost of the collective, not a speed-up: that needs two machines.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "e2e" / "train_worker.py"


def transform(data: Path, out: Path) -> tuple[str, str]:
    """Transform's (examples, graph) for `data`, run once into `out` (reused when there)."""
    from tfx import v1 as tfx

    from benchmarks.common import data_pipeline
    from pipeline.config import load_config

    base = out / "pipelines" / "fmnist-sample" / "Transform"
    if not (base / "transformed_examples").exists():
        config = load_config("sample", overrides={"output_root": str(out), "data_root": str(data)})
        tfx.orchestration.LocalDagRunner().run(data_pipeline(config))
    newest = lambda d: str(max((base / d).iterdir(), key=lambda p: int(p.name)))  # noqa: E731
    return newest("transformed_examples"), newest("transform_graph")


def accuracy(serving: Path, test_csv: Path) -> float:
    import tensorflow as tf

    from components.data_input.csv_table import read_table
    from schema import contract

    values = read_table(str(test_csv)).values
    model = tf.saved_model.load(str(serving))
    correct = 0
    for start in range(0, len(values), 1000):
        chunk = values[start:start + 1000]
        images = tf.constant(chunk[:, 1:].reshape(-1, 28, 28), tf.float32)
        out = model.signatures[contract.IMAGES_SIGNATURE](**{contract.IMAGES_INPUT: images})
        correct += int((out[contract.PROBABILITIES_OUTPUT].numpy().argmax(axis=1) == chunk[:, 0]).sum())
    return correct / len(values)


def run_workers(examples: str, graph: str, out: Path, workers: int) -> float:
    """Seconds until every worker exited; the chief exports to out/serving."""
    from kubeflow import tfjob
    from serving.ports import free_port

    procs = []
    start = time.monotonic()
    if workers == 1:
        procs.append(subprocess.Popen([sys.executable, str(WORKER), examples, graph, str(out / "serving"),
                                       str(out / "run")], cwd=ROOT, stdout=subprocess.DEVNULL))
    else:
        job = tfjob.tfjob_manifest("bench", "default", tfjob.TFJobSettings(image="-", workers=workers), ["-"])
        addresses: dict[str, str] = {}
        for rtype, count in (("Chief", 1), ("Worker", workers - 1)):
            for index in range(count):
                config = json.loads(tfjob.operator_tf_config(job, rtype, index))
                for hosts in config["cluster"].values():
                    for host in hosts:
                        addresses.setdefault(host, f"127.0.0.1:{free_port()}")
                config["cluster"] = {k: [addresses[h] for h in v] for k, v in config["cluster"].items()}
                env = dict(os.environ, TF_CONFIG=json.dumps(config))
                procs.append(subprocess.Popen(
                    [sys.executable, str(WORKER), examples, graph, str(out / "serving"),
                     str(out / f"run-{rtype}-{index}")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a worker failed: exit codes {codes}")
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("/tmp/fmnist-bench-distributed"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    data = args.data.resolve()
    examples, graph = transform(data, args.out / data.name)
    results = {}
    for workers in (1, 2):
        out = args.out / data.name / f"workers-{workers}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        seconds = run_workers(examples, graph, out, workers)
        results[workers] = {"seconds": round(seconds, 1),
                            "accuracy": round(accuracy(out / "serving", data / "fashion-mnist_test.csv.gz"), 4)}
        print(f"{data.name}: {workers} worker(s): {results[workers]}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
