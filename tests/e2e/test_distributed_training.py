"""Distributed training for real on CPU, judged by the model it produces: the real run_fn on the
sample's Transform output, each model's accuracy on the sample's test split (600 images, through the
exported `serving_images` signature) against the single-process model trained on the same data for
the same epochs in this module.

* two logical CPU devices under MirroredStrategy: the one-pod, several-GPU code path (--gpus N);
* the TFJob the Trainer step submits with --workers 2 (kubeflow/tfjob.py), built from the Trainer's
  real artifacts and properties, validated against the Training Operator's CRD, and its two
  replicas started here as the operator starts them: each replica's own command, as a separate
  process, with the TF_CONFIG the operator writes (genTFConfigJSONStr), host names resolved to
  127.0.0.1 as the cluster's DNS would resolve the replicas' services.

Each must reach the sample's blessing threshold and lie within 2 points of the single-process model;
a model with garbage weights reaches neither.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

from conftest import read_sample_rows
from pipeline.config import PROJECT_ROOT, load_config
from schema import contract
from serving.ports import free_port

WORKER = PROJECT_ROOT / "tests" / "e2e" / "train_worker.py"
CRD = PROJECT_ROOT / "tests" / "data" / "kubeflow.org_tfjobs.v1.9.0.yaml.gz"
MAX_GAP = 0.02                 # accuracy points between a distributed model and the single-process one
TIMEOUT = 900


def accuracy(serving_dir: str | Path) -> float:
    """Accuracy of an exported model on the sample's test CSV, through its raw-image signature."""
    import tensorflow as tf

    _, rows = read_sample_rows()
    data = np.array(rows)
    model = tf.saved_model.load(str(serving_dir))
    images = tf.constant(data[:, 1:].reshape(-1, contract.IMAGE_SIZE, contract.IMAGE_SIZE), tf.float32)
    probabilities = model.signatures[contract.IMAGES_SIGNATURE](**{contract.IMAGES_INPUT: images})
    return float((probabilities[contract.PROBABILITIES_OUTPUT].numpy().argmax(axis=1) == data[:, 0]).mean())


@pytest.fixture(scope="module")
def transformed(sample_run) -> tuple[str, str]:
    _, summary = sample_run
    transform = summary.component("Transform")
    return transform.outputs["transformed_examples"][0].uri, transform.outputs["transform_graph"][0].uri


def _train(examples: str, graph: str, out: Path, *extra: str) -> str:
    result = subprocess.run([sys.executable, str(WORKER), examples, graph, str(out / "serving"), str(out / "run"),
                             *extra], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def single_process(transformed, tmp_path_factory) -> float:
    """The reference: the same run_fn, settings and epochs in one process on one device."""
    out = tmp_path_factory.mktemp("single")
    log = _train(*transformed, out)
    assert "with 1 replica(s)" in log
    return accuracy(out / "serving")


def _threshold() -> float:
    return load_config("sample").accuracy_threshold


def test_two_logical_devices_train_with_mirrored_strategy_to_the_single_process_accuracy(
        transformed, single_process, tmp_path):
    """The multi-GPU code path (MirroredStrategy over 2 devices) run on 2 logical CPU devices."""
    log = _train(*transformed, tmp_path, "2")
    assert "distribution strategy: MirroredStrategy with 2 replica(s)" in log
    assert "global batch 64 over 2 replica(s): 32 per replica" in log      # the scaling rule
    mirrored = accuracy(tmp_path / "serving")
    assert mirrored >= _threshold(), mirrored
    assert abs(mirrored - single_process) <= MAX_GAP, (mirrored, single_process)


def _trainer_artifacts(examples: str, graph: str, out: Path) -> tuple[dict, dict, dict]:
    """The Trainer's input and output artifacts and its execution properties, as the KFP step gets
    them (train_worker.py's small training settings, so the test takes seconds per epoch)."""
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import json_utils, proto_utils
    from tfx.v1.proto import EvalArgs, TrainArgs

    sys.path.insert(0, str(WORKER.parent))
    from train_worker import custom_config

    examples_artifact = standard_artifacts.Examples()
    examples_artifact.uri = examples
    examples_artifact.split_names = artifact_utils.encode_split_names(
        sorted(p.name.removeprefix("Split-") for p in Path(examples).glob("Split-*")))
    graph_artifact = standard_artifacts.TransformGraph()
    graph_artifact.uri = graph
    model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    model.uri, model_run.uri = str(out / "model"), str(out / "model_run")
    from kubeflow.tfjob import TFJobSettings

    config = {**custom_config(), contract.TFJOB_CONFIG_KEY: TFJobSettings(image="fmnist-tfx:test-gpu", workers=2,
                                                                          gpus=1).to_dict()}
    props = {"train_args": proto_utils.proto_to_json(TrainArgs(splits=[contract.TRAIN_SPLIT])),
             "eval_args": proto_utils.proto_to_json(EvalArgs(splits=[contract.TEST_SPLIT])),
             "run_fn": "components.training.trainer.run_fn", "custom_config": json_utils.dumps(config), "epochs": 8}
    return ({"examples": [examples_artifact], "transform_graph": [graph_artifact]},
            {"model": [model], "model_run": [model_run]}, props)


def test_the_tfjobs_two_replicas_train_together_as_the_operator_starts_them_and_the_chief_exports(
        transformed, single_process, tmp_path):
    from tfx.utils import path_utils

    from kubeflow import tfjob

    inputs, outputs, props = _trainer_artifacts(*transformed, tmp_path)
    job = tfjob.build_tfjob(inputs, outputs, props, namespace="kubeflow")
    crd = yaml.safe_load(gzip.decompress(CRD.read_bytes()))
    jsonschema.validate(job, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], cls=jsonschema.Draft4Validator)
    assert {k: v["replicas"] for k, v in job["spec"]["tfReplicaSpecs"].items()} == {"Chief": 1, "Worker": 1}

    # The cluster's DNS: each replica's service name -> a port on 127.0.0.1.
    addresses: dict[str, str] = {}
    procs = {}
    for rtype in ("Chief", "Worker"):
        (container,) = job["spec"]["tfReplicaSpecs"][rtype]["template"]["spec"]["containers"]
        config = json.loads(tfjob.operator_tf_config(job, rtype, 0))
        for hosts in config["cluster"].values():
            for host in hosts:
                addresses.setdefault(host, f"127.0.0.1:{free_port()}")
        config["cluster"] = {k: [addresses[h] for h in hosts] for k, hosts in config["cluster"].items()}
        env = dict(os.environ, TF_CONFIG=json.dumps(config))
        procs[rtype] = subprocess.Popen(container["command"], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
    logs = {}
    for rtype, p in procs.items():
        try:
            logs[rtype] = p.communicate(timeout=TIMEOUT)[0]
        finally:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs.values()] == [0, 0], "\n=====\n".join(v[-2500:] for v in logs.values())
    # tf.distribute.MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy.
    for log in logs.values():
        assert "CollectiveAllReduceStrategy with 2 replica(s)" in log or \
            "MultiWorkerMirroredStrategy with 2 replica(s)" in log, log[-2500:]
        assert "global batch 64 over 2 replica(s): 32 per replica" in log
    tfjob.check_exported(outputs["model"][0].uri)     # what the step checks before publishing
    serving = path_utils.serving_model_path(outputs["model"][0].uri)
    assert sorted(os.listdir(Path(serving).parent)) == [Path(serving).name]   # the chief's export only
    two_workers = accuracy(serving)
    assert two_workers >= _threshold(), two_workers
    assert abs(two_workers - single_process) <= MAX_GAP, (two_workers, single_process)


def test_a_garbage_model_fails_the_bar(single_process, transformed, tmp_path):
    """The checks above can fail: a model whose weights are shuffled (the same architecture and
    export) is far below the threshold."""
    import tensorflow_transform as tft

    from components.models.registry import build_model
    from components.training import export
    from components.training.training_config import TrainingConfig

    sys.path.insert(0, str(WORKER.parent))
    from train_worker import custom_config

    model = build_model(TrainingConfig.from_custom_config(custom_config()))
    rng = np.random.default_rng(0)
    model.set_weights([rng.permutation(w.ravel()).reshape(w.shape) for w in model.get_weights()])
    export.export_model(model, tft.TFTransformOutput(transformed[1]), str(tmp_path / "garbage"))
    garbage = accuracy(tmp_path / "garbage")
    assert garbage < _threshold() and abs(garbage - single_process) > MAX_GAP, (garbage, single_process)
