"""Several Trainer workers on open-source Kubeflow: the Trainer step submits a Training Operator TFJob.

With `fmnist kubeflow compile --workers W` (W > 1, target kfp) the Trainer step's executor is
`TFJobTrainerExecutor`: instead of training in its own pod it

1. builds a `kubeflow.org/v1` TFJob (`tfjob_manifest`) of one Chief and W-1 Workers, each running
   the very command TFX's Vertex training extension gives its replicas
   (`python -m tfx.scripts.run_executor --executor_class_path <TFX's GenericExecutor> --inputs ...`,
   tfx/extensions/google_cloud_ai_platform/training_clients.py, generate_container_command), so
   every replica calls the same `run_fn` (components/training/trainer.py) in the same image;
2. creates it through the Kubernetes API (RBAC: kubeflow/manifests/tfjob-rbac.yaml), logs where the
   replicas' logs are (`kubectl logs -l training.kubeflow.org/job-name=...`), polls its conditions
   until Succeeded or Failed, and fails the step with the job's reason and message when it fails;
3. checks the Chief exported the SavedModel to the step's `model` output: that is the step's output.

The operator (kubeflow/training-operator v1.9.0, the last release with TFJob: master became
Kubeflow Trainer v2, which dropped TFJob in "Remove the Training Operator V1 Source Code", #2389)
creates one pod and one headless service per replica and writes TF_CONFIG into each pod
(pkg/controller.v1/tensorflow/tensorflow.go, genTFConfigJSONStr and genClusterSpec):
`operator_tf_config` is that function, so the tests can start the replicas here exactly as the
operator would (tests/e2e/test_distributed_training.py) and check it against the operator's own
expected strings (pkg/controller.v1/tensorflow/pod_test.go).

The replicas read Transform's output and write the model through TensorFlow's file systems, not
through the KFP launcher (which only copies files in and out of the launching pod): the pipeline
root must therefore be one TensorFlow opens natively, gs:// (kubeflow/runner.py refuses others at
compile time when --workers > 1).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from typing import Any

from tfx.dsl.components.base import base_executor

from schema import contract

log = logging.getLogger(__name__)

# kubeflow/training-operator v1.9.0, pkg/apis/kubeflow.org/v1: tensorflow_types.go and common_types.go.
GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "tfjobs", "TFJob"
CONTAINER_NAME = "tensorflow"          # TFJobDefaultContainerName: the container the operator configures
PORT_NAME, DEFAULT_PORT = "tfjob-port", 2222   # TFJobDefaultPortName, TFJobDefaultPort
CHIEF, WORKER = "Chief", "Worker"      # TFJobReplicaTypeChief, TFJobReplicaTypeWorker
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
CLUSTER_DOMAIN_ENV = "CUSTOM_CLUSTER_DOMAIN"   # EnvCustomClusterDomain, read by the operator
GPU_RESOURCE = "nvidia.com/gpu"
# What every replica runs: TFX's plain Trainer executor, as the Vertex extension's replicas do.
REPLICA_EXECUTOR = "tfx.components.trainer.executor.GenericExecutor"
REPLICA_COMMAND = ["python", "-m", "tfx.scripts.run_executor"]
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
POLL_SECONDS = 15


@dataclasses.dataclass(frozen=True)
class TFJobSettings:
    """What the compiled pipeline tells the Trainer step about the TFJob (custom_config[TFJOB_CONFIG_KEY])."""
    image: str
    workers: int = 2                   # replicas in all: one Chief and workers - 1 Workers
    gpus: int = 0                      # per replica (nvidia.com/gpu limit)
    node_selector: dict[str, str] = dataclasses.field(default_factory=dict)
    namespace: str = ""                # "" = the namespace the step's pod runs in
    cpu: str = "4"
    memory: str = "16G"
    timeout_seconds: int = 24 * 3600

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TFJobSettings:
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def job_name(model_uri: str) -> str:
    """A name unique to this Trainer execution and stable over its retries: from its model output URI.

    Short enough for the operator's `<name>-worker-<i>` pod and service names and its job-name label
    (63 characters)."""
    return "fmnist-trainer-" + hashlib.sha256(model_uri.encode()).hexdigest()[:12]


def tfjob_manifest(name: str, namespace: str, settings: TFJobSettings, command: list[str]) -> dict[str, Any]:
    """The TFJob object: Chief + (workers - 1) Workers, the same container in each.

    restartPolicy Never and backoffLimit 0: a MultiWorkerMirroredStrategy cluster cannot take back a
    restarted replica mid-run, so a failed replica fails the job at once with its reason, and the
    KFP step (which has its own retry policy) starts the whole job again. cleanPodPolicy Running
    keeps finished pods, and so their logs, until the job is deleted.
    """
    if settings.workers < 2:
        raise ValueError(f"a TFJob is for 2 or more workers, not {settings.workers}")
    limits: dict[str, Any] = {"cpu": settings.cpu, "memory": settings.memory}
    if settings.gpus:
        limits[GPU_RESOURCE] = settings.gpus

    def replicas(count: int) -> dict[str, Any]:
        pod: dict[str, Any] = {"containers": [{
            "name": CONTAINER_NAME, "image": settings.image, "command": list(command),
            "ports": [{"name": PORT_NAME, "containerPort": DEFAULT_PORT}],
            "resources": {"limits": dict(limits)}}]}
        if settings.node_selector:
            pod["nodeSelector"] = dict(settings.node_selector)
        return {"replicas": count, "restartPolicy": "Never", "template": {"spec": pod}}

    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "fmnist"}},
        "spec": {"runPolicy": {"backoffLimit": 0, "cleanPodPolicy": "Running"},
                 "tfReplicaSpecs": {CHIEF: replicas(1), WORKER: replicas(settings.workers - 1)}},
    }


def operator_tf_config(tfjob: dict[str, Any], replica_type: str, index: int, cluster_domain: str = "") -> str:
    """TF_CONFIG as the Training Operator writes it into replica (`replica_type`, `index`)'s pod.

    A port of genTFConfigJSONStr and genClusterSpec (training-operator v1.9.0,
    pkg/controller.v1/tensorflow/tensorflow.go; the port from GetPortFromTFJob in util.go, the host
    names from common.GenGeneralName): per replica type, lower-cased, the list of
    `<job>-<type>-<i>.<namespace>.svc[.<CUSTOM_CLUSTER_DOMAIN>]:<port>`, the task, and
    "environment": "cloud" -- serialised as Go's encoding/json does (map keys sorted, struct fields
    in declaration order, no spaces). Without enableDynamicWorker, as this project's jobs are.
    """
    name, namespace = tfjob["metadata"]["name"], tfjob["metadata"]["namespace"]
    cluster: dict[str, list[str]] = {}
    for rtype, spec in tfjob["spec"]["tfReplicaSpecs"].items():
        rt = rtype.lower()
        port = DEFAULT_PORT
        for container in spec["template"]["spec"]["containers"]:
            if container["name"] == CONTAINER_NAME:
                port = next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == PORT_NAME),
                            port)
        hosts = []
        for i in range(int(spec["replicas"])):
            service = f"{name}-{rt}-{i}".replace("/", "-") + f".{namespace}.svc"
            if cluster_domain:
                service += f".{cluster_domain}"
            hosts.append(f"{service}:{port}")
        cluster[rt] = hosts
    config = {"cluster": dict(sorted(cluster.items())), "task": {"type": replica_type.lower(), "index": int(index)},
              "environment": "cloud"}
    return json.dumps(config, separators=(",", ":"))


def job_outcome(status: dict[str, Any] | None) -> tuple[bool, str]:
    """(finished, failure) from a TFJob's status: failure is "" on success, else the job's reason.

    The operator appends conditions (Created, Running, Restarting, Succeeded, Failed); the job is
    over when a Succeeded or Failed condition has status "True" (pkg/apis/kubeflow.org/v1,
    common_types.go, JobConditionType)."""
    for condition in reversed((status or {}).get("conditions") or []):
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Succeeded":
            return True, ""
        if condition.get("type") == "Failed":
            return True, f"{condition.get('reason', 'Failed')}: {condition.get('message', '')}".strip()
    return False, ""


def replica_command(input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]],
                    exec_properties: dict[str, Any]) -> list[str]:
    """The replicas' command: TFX's run_executor with this execution's artifacts and properties,
    as the Vertex extension builds it, minus the TFJob settings (no replica launches anything)."""
    from tfx.types import artifact_utils
    from tfx.utils import json_utils

    props = dict(exec_properties)
    config = json_utils.loads(props.get("custom_config") or "null") or {}
    config.pop(contract.TFJOB_CONFIG_KEY, None)
    props["custom_config"] = json_utils.dumps(config)
    return REPLICA_COMMAND + [
        "--executor_class_path", REPLICA_EXECUTOR,
        "--inputs", artifact_utils.jsonify_artifact_dict(input_dict),
        "--outputs", artifact_utils.jsonify_artifact_dict(output_dict),
        "--exec-properties", json.dumps(props, sort_keys=True)]


def current_namespace() -> str:
    try:
        with open(NAMESPACE_FILE) as f:
            return f.read().strip()
    except OSError:
        return "default"


def run_tfjob(tfjob: dict[str, Any], timeout_seconds: float, poll_seconds: float = POLL_SECONDS) -> None:
    """Create the TFJob (replacing a previous attempt's of the same name), wait for its end, raise
    RuntimeError with its reason if it failed. Uses the pod's service account (in-cluster config)."""
    from kubernetes import client, config as k8s_config
    from kubernetes.client.rest import ApiException

    k8s_config.load_incluster_config()
    api = client.CustomObjectsApi()
    name, namespace = tfjob["metadata"]["name"], tfjob["metadata"]["namespace"]
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, tfjob)
            break
        except ApiException as e:
            if e.status != 409 or time.monotonic() > deadline:
                raise
            # A retried step: the previous attempt's job goes first (its replicas cannot rejoin).
            log.info("TFJob %s/%s exists from an earlier attempt: deleting it", namespace, name)
            try:
                api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                    body=client.V1DeleteOptions(propagation_policy="Foreground"))
            except ApiException as gone:
                if gone.status != 404:
                    raise
            time.sleep(poll_seconds)
    log.info("submitted TFJob %s/%s; replicas' logs: kubectl -n %s logs -f -l %s=%s,%s=chief",
             namespace, name, namespace, JOB_NAME_LABEL, name, REPLICA_TYPE_LABEL)
    while True:
        job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        finished, failure = job_outcome(job.get("status"))
        if finished:
            if failure:
                raise RuntimeError(f"TFJob {namespace}/{name} failed: {failure}")
            log.info("TFJob %s/%s succeeded", namespace, name)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"TFJob {namespace}/{name} not finished after {timeout_seconds:.0f} s")
        time.sleep(poll_seconds)


def check_exported(model_uri: str) -> None:
    """The step's output is the Chief's export: refuse to publish a model directory without one."""
    import tensorflow as tf
    from tfx.utils import path_utils

    serving = path_utils.serving_model_path(model_uri)
    if not tf.io.gfile.exists(os.path.join(serving, contract.SAVED_MODEL_FILE)):
        raise RuntimeError(f"the TFJob succeeded but its Chief exported no SavedModel under {serving}")


def build_tfjob(input_dict: dict, output_dict: dict, exec_properties: dict[str, Any],
                namespace: str = "") -> dict[str, Any]:
    """The TFJob for one Trainer execution: its settings from custom_config, the replicas' command
    from the (folded) artifacts and properties, the name from the model output's URI."""
    from tfx.types import artifact_utils
    from tfx.utils import json_utils

    from components.custom_components import fold_trainer_inputs

    input_dict, props = fold_trainer_inputs(input_dict, exec_properties)
    config = json_utils.loads(props.get("custom_config") or "null") or {}
    settings = TFJobSettings.from_dict(config[contract.TFJOB_CONFIG_KEY])
    model_uri = artifact_utils.get_single_uri(output_dict["model"])
    return tfjob_manifest(job_name(model_uri), namespace or settings.namespace or current_namespace(), settings,
                          replica_command(input_dict, output_dict, props))


class TFJobTrainerExecutor(base_executor.BaseExecutor):
    """The Trainer step's executor with --workers > 1 on open-source KFP: submits the replicas as a
    TFJob, waits for it, and publishes the Chief's export as the step's `model` output."""

    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict[str, Any]) -> None:
        from tfx.types import artifact_utils
        from tfx.utils import json_utils

        tfjob = build_tfjob(input_dict, output_dict, exec_properties)
        config = json_utils.loads(exec_properties.get("custom_config") or "null") or {}
        run_tfjob(tfjob, TFJobSettings.from_dict(config[contract.TFJOB_CONFIG_KEY]).timeout_seconds)
        check_exported(artifact_utils.get_single_uri(output_dict["model"]))
