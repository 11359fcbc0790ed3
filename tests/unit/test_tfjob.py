"""The TFJob the Trainer step submits (kubeflow/tfjob.py), checked against the Training Operator itself.

tests/data/kubeflow.org_tfjobs.v1.9.0.yaml.gz is kubeflow/training-operator's CRD at tag v1.9.0
(manifests/base/crds/kubeflow.org_tfjobs.yaml, commit 6f74c7f6b2ed6c27aabd82d0a316b23f0646059c; the
last release with TFJob), gzipped. Its openAPIV3Schema is what the API server validates a TFJob
against; here the `jsonschema` package validates it (requirements.lock). The API server also
*prunes* fields a structural schema does not declare, silently: a misspelt field would vanish
instead of failing, so every field of the object must also be declared.
"""
from __future__ import annotations

import gzip
import json

import jsonschema
import pytest
import yaml

from kubeflow import tfjob
from pipeline.config import PROJECT_ROOT

CRD = PROJECT_ROOT / "tests" / "data" / "kubeflow.org_tfjobs.v1.9.0.yaml.gz"
COMMAND = ["python", "-m", "tfx.scripts.run_executor", "--executor_class_path", tfjob.REPLICA_EXECUTOR]


@pytest.fixture(scope="module")
def schema() -> dict:
    crd = yaml.safe_load(gzip.decompress(CRD.read_bytes()))
    assert crd["spec"]["group"] == tfjob.GROUP and crd["spec"]["names"]["plural"] == tfjob.PLURAL
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == tfjob.VERSION]
    assert version["served"] and version["storage"]
    return version["schema"]["openAPIV3Schema"]


def undeclared(value, schema: dict, path: str = "") -> list[str]:
    """Paths in `value` the structural schema does not declare (what the API server would prune).

    The top-level metadata is the API server's ObjectMeta, which a CRD leaves undeclared."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or path == ".metadata":
        return []
    found = []
    if isinstance(value, dict):
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                found += undeclared(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += undeclared(item, extra, f"{path}.{key}")
            elif extra is not True:
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += undeclared(item, schema["items"], f"{path}[{i}]")
    return found


def _job(workers: int = 3, gpus: int = 2) -> dict:
    settings = tfjob.TFJobSettings(image="registry.example.com/fmnist:1-gpu", workers=workers, gpus=gpus,
                                   node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"})
    return tfjob.tfjob_manifest(tfjob.job_name("gs://b/root/Trainer/model/7"), "kubeflow", settings, COMMAND)


def test_the_tfjob_is_valid_against_the_operators_crd_and_every_field_is_declared(schema):
    job = _job()
    jsonschema.validate(job, schema, cls=jsonschema.Draft4Validator)
    assert undeclared(job, schema) == []
    replicas = job["spec"]["tfReplicaSpecs"]
    assert {k: v["replicas"] for k, v in replicas.items()} == {"Chief": 1, "Worker": 2}
    for spec in replicas.values():
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "tensorflow" and container["command"] == COMMAND
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
        assert spec["template"]["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert len(job["metadata"]["name"]) + len("-worker-99") <= 63


def test_the_validator_and_the_pruning_check_can_fail(schema):
    job = _job()
    job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError, match="'two' is not of type 'integer'"):
        jsonschema.validate(job, schema, cls=jsonschema.Draft4Validator)
    job = _job()
    job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["nodeSelecter"] = {"a": "b"}
    job["spec"]["runPolicy"]["backofLimit"] = 0
    assert undeclared(job, schema) == [".spec.runPolicy.backofLimit",
                                       ".spec.tfReplicaSpecs.Worker.template.spec.nodeSelecter"]


def test_one_worker_is_not_a_tfjob():
    with pytest.raises(ValueError):
        _job(workers=1)


def _replicas(name: str, namespace: str, **counts: int) -> dict:
    container = {"name": "tensorflow", "image": "i"}
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"tfReplicaSpecs": {t: {"replicas": n, "template": {"spec": {"containers": [container]}}}
                                        for t, n in counts.items()}}}


@pytest.mark.parametrize("counts, domain, expected", [
    # training-operator v1.9.0, pkg/controller.v1/tensorflow/pod_test.go, TestClusterSpec: the
    # operator's own expected TF_CONFIG strings, byte for byte.
    ({"Worker": 1, "PS": 1}, "tf.training.org",
     '{"cluster":{"ps":["test-tfjob-ps-0.ns2.svc.tf.training.org:2222"],"worker":["test-tfjob-worker-0.ns2.svc.'
     'tf.training.org:2222"]},"task":{"type":"worker","index":0},"environment":"cloud"}'),
    ({"Worker": 1, "PS": 1, "Evaluator": 1}, "",
     '{"cluster":{"evaluator":["test-tfjob-evaluator-0.ns2.svc:2222"],"ps":["test-tfjob-ps-0.ns2.svc:2222"],'
     '"worker":["test-tfjob-worker-0.ns2.svc:2222"]},"task":{"type":"worker","index":0},"environment":"cloud"}'),
])
def test_tf_config_is_the_operators_byte_for_byte(counts, domain, expected):
    assert tfjob.operator_tf_config(_replicas("test-tfjob", "ns2", **counts), "worker", 0, domain) == expected


def test_tf_config_of_this_projects_job_names_the_chief_and_the_workers():
    job = _job(workers=3)
    name = job["metadata"]["name"]
    config = json.loads(tfjob.operator_tf_config(job, "Worker", 1))
    assert config["cluster"] == {"chief": [f"{name}-chief-0.kubeflow.svc:2222"],
                                 "worker": [f"{name}-worker-{i}.kubeflow.svc:2222" for i in range(2)]}
    assert config["task"] == {"type": "worker", "index": 1}


@pytest.mark.parametrize("conditions, outcome", [
    ([], (False, "")),
    ([{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}], (False, "")),
    ([{"type": "Running", "status": "False"}, {"type": "Succeeded", "status": "True"}], (True, "")),
    ([{"type": "Running", "status": "False"},
      {"type": "Failed", "status": "True", "reason": "TFJobFailed", "message": "TFJob kubeflow/x has failed because "
       "1 Worker replica(s) failed."}],
     (True, "TFJobFailed: TFJob kubeflow/x has failed because 1 Worker replica(s) failed.")),
])
def test_the_job_is_over_when_the_operator_says_succeeded_or_failed(conditions, outcome):
    assert tfjob.job_outcome({"conditions": conditions}) == outcome


def test_the_rbac_manifest_grants_what_the_step_calls():
    docs = [d for d in yaml.safe_load_all((PROJECT_ROOT / "kubeflow" / "manifests" / "tfjob-rbac.yaml").read_text())
            if d]
    role = next(d for d in docs if d["kind"] == "Role")
    rules = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {"create", "get", "watch", "delete"} <= rules[(tfjob.GROUP, tfjob.PLURAL)]
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"] == binding["subjects"][0]["namespace"]
