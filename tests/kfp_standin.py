"""A stand-in for the open-source Kubeflow Pipelines 2.x backend, for tests: it runs a compiled
PipelineSpec YAML task by task, as the API server, driver and launcher would, each task as a
container of the task's image (tests/container_engine.py: the engine's REST API).

Every behaviour copied names the file of kubeflow/pipelines it comes from (backend/src/...):

* Upload (apiserver/template/template.go, v2_template.go): the YAML's documents are read; the one
  that parses as a PipelineSpec with a name and a root is the spec, a document with
  `platforms.kubernetes` the platform spec; schemaVersion must be 2.1.0; the name must match the
  DNS-style pattern; a root parameter needs a value or a default and its type must match; a run
  parameter the spec does not declare is refused ("parameter(s) provided are not required by
  pipeline").
* Compile to Argo (v2/compiler/visitor.go, argocompiler/dag.go): resolver executors and any
  executor that is neither a container nor an importer are rejected. Argo runs every task whose
  dependencies are done at once, and schedules nothing new after a failure (a DAG's failFast);
  here at most `max_parallel` at a time (default: the cores).
* Driver (v2/driver/resolve.go, driver.go, cache.go; v2/cacheutils/cache.go): parameters resolve
  from the run's values or the root defaults (`componentInputParameter`) or from `runtimeValue.
  constant`, with the run placeholders substituted; the 2.0.0 `constantValue` form is "not
  implemented". Input artifacts come from ML Metadata: name = the MLMD id, type with an empty
  instance schema, metadata as metadata/converter.go stores and reads it back, including the
  `display_name` and `store_session_info` custom properties metadata/client.go (RecordArtifact)
  adds to every artifact. Outputs are provisioned under `<root>/<pipeline>/<run id>/<task>/<uuid>/
  <output>` plus the `executor-logs` artifact; the output metadata file sits in the task root's
  local path. With caching enabled, a fingerprint of inputs, output specs, command and image that
  matches an earlier successful execution reuses its outputs instead of running.
* Launcher (v2/component/launcher_v2.go): parameter defaults are added; `{{$}}` and the
  artifact/parameter placeholders are substituted in command and args (numbers as Go's
  strconv.FormatFloat(v, 'f', -1, 64): 1e-05 -> 0.00001); input artifacts are downloaded to their
  local paths (LocalPathForURI: minio:// -> /minio/...), output folders created, the command run,
  the output metadata file read (absent -> empty), artifact URIs and metadata merged from it
  (mergeRuntimeArtifacts), local output paths uploaded, and the artifacts recorded in ML Metadata
  (converter.go: a null value fails). The object store holds files, not directories
  (objectstore/object_store.go, UploadBlob/DownloadBlob walk files), so an empty directory never
  reaches the next step; an output URI outside the pipeline root's bucket cannot be uploaded
  (KeyFromURI) and fails the task.

The pod: a container of the image named in the spec, with the image's ENTRYPOINT (replaced by the
spec's `command` when it has one, as Kubernetes does), ENV and WORKDIR; its own /tmp and $HOME
(a fresh container file system each time); nothing of the checkout. What reaches it: the pod's
/minio, a fresh directory per task into which the launcher downloaded the inputs (bind-mounted;
on a cluster, the launcher's emptyDir), and the volumes the test declares (data root, serving
root, span store), mounted at their own paths as a PersistentVolume would be. The object store
is a local directory (`<workdir>/objectstore/<bucket>/<key>`).

A `gs://` pipeline root is what a pipeline whose Beam steps run on a cluster needs: TensorFlow and
Beam in the step and in the cluster's workers write the artifacts themselves, which a pod's /minio
cannot offer (entrypoint.py keeps gs:// URIs). The launcher still downloads every input artifact to
/gcs/... and uploads whatever /gcs/... holds afterwards (downloadArtifacts, uploadOutputArtifacts:
a missing local path is only a warning). Here the bucket is the GCS stand-in (tools/gcs), reached
with google-cloud-storage as the launcher's gocloud driver reaches GCS, and the pods get the
stand-in's environment and this machine's network (`pod_env`, `network`): on a cluster, the node's
network and the pod's service account.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import decimal
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

from container_engine import ContainerEngine

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2.1.0"
NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
EXECUTOR_LOGS = "executor-logs"
# What a default KFP install records as `store_session_info` for its MinIO bucket
# (objectstore/config.go, the session info of the kfp-launcher config; client.go stores it as JSON).
MINIO_SESSION_INFO = json.dumps({"Provider": "minio", "Params": {
    "accessKeyKey": "accesskey", "disableSSL": "true", "endpoint": "minio-service.kubeflow:9000",
    "fromEnv": "false", "region": "minio", "secretKeyKey": "secretkey",
    "secretName": "mlpipeline-minio-artifact"}}, separators=(",", ":"))
# A gs:// root whose credentials come from the pod's environment (objectstore/config.go: a session
# of Provider "gs", GCSParams read by StructuredGCSParams, `fromEnv`).
GCS_SESSION_INFO = json.dumps({"Provider": "gs", "Params": {"fromEnv": "true"}}, separators=(",", ":"))


class Rejected(Exception):
    """What the backend refuses, with its own message."""


@dataclasses.dataclass
class TaskResult:
    name: str
    state: str                       # COMPLETE, CACHED, FAILED
    outputs: dict[str, int]          # output key -> MLMD artifact id
    log: str = ""
    executor_input: dict | None = None
    started: float = 0.0             # time.monotonic() around the container's run
    finished: float = 0.0


@dataclasses.dataclass
class RunResult:
    run_id: str
    tasks: dict[str, TaskResult]
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return not self.error


def local_path(uri: str) -> str:
    """LocalPathForURI (launcher_v2.go)."""
    for scheme, prefix in (("gs://", "/gcs/"), ("minio://", "/minio/"), ("s3://", "/s3/")):
        if uri.startswith(scheme):
            return prefix + uri[len(scheme):]
    raise Rejected(f"failed to generate local path for URI {uri}: unsupported storage scheme")


def local_mount(uri: str) -> str:
    """The pod directory LocalPathForURI puts the URI under (/minio, /gcs, /s3)."""
    return "/" + local_path(uri).split("/")[1]


def prefixed_bucket(pipeline_root: str) -> str:
    """Config.PrefixedBucket (objectstore/object_store.go): scheme, bucket and the root's prefix."""
    scheme, rest = pipeline_root.split("://", 1)
    return f"{scheme}://{rest.strip('/')}"


def key_from_uri(uri: str, bucket: str) -> str:
    """KeyFromURI (objectstore/object_store.go): an artifact outside the root's bucket cannot be
    uploaded."""
    if not uri.startswith(bucket):
        raise Rejected(f"URI {uri!r} does not have expected bucket prefix {bucket!r}")
    return uri[len(bucket):].lstrip("/")


def go_format_float(value: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64), how the launcher writes a number into a command line:
    the shortest digits that round-trip, never an exponent (1e-05 -> 0.00001, 3.0 -> 3)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(decimal.Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def copy_files(source: Path, target: Path) -> None:
    """Copy the files under `source` to `target`: an object store holds blobs, so a directory with
    no file in it does not exist there (UploadBlob / DownloadBlob in objectstore/object_store.go)."""
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        return
    for parent, _, files in os.walk(source):
        for name in files:
            dest = target / Path(parent).relative_to(source) / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(parent) / name, dest)


def to_mlmd_value(value: struct_pb2.Value) -> dict:
    """StructValueToMLMDValue (metadata/converter.go)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return {"string": value.string_value}
    if kind == "number_value":
        return {"double": value.number_value}
    if kind == "bool_value":
        return {"int": int(value.bool_value)}
    if kind == "list_value":
        return {"struct": {"list": json_format.MessageToDict(value.list_value)}}
    if kind == "struct_value":
        return {"struct": {"struct": json_format.MessageToDict(value.struct_value)}}
    raise Rejected(f"unknown/unsupported value type *structpb.Value_{kind}")


def from_mlmd_value(value: dict) -> Any:
    """toRuntimeArtifact (metadata/converter.go): int and double both become numbers."""
    (kind, v), = value.items()
    return float(v) if kind in ("int", "double") else v


class LocalObjectStore:
    """A bucket as a local directory: <root>/<bucket>/<key>."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, uri: str) -> Path:
        return self.root / uri.split("://", 1)[1]

    def download(self, uri: str, target: Path) -> None:
        if self.path(uri).exists():
            copy_files(self.path(uri), target)

    def upload(self, source: Path, uri: str) -> None:
        copy_files(source, self.path(uri))


class GcsObjectStore:
    """gs:// buckets through google-cloud-storage: the GCS stand-in (tools/gcs) when the process's
    STORAGE_EMULATOR_HOST names it. Files, not directories, as in LocalObjectStore."""

    def __init__(self) -> None:
        from google.cloud import storage

        self.client = storage.Client.create_anonymous_client()

    @staticmethod
    def split(uri: str) -> tuple[str, str]:
        bucket, _, key = uri[len("gs://"):].partition("/")
        return bucket, key.rstrip("/")

    def download(self, uri: str, target: Path) -> None:
        bucket, key = self.split(uri)
        for blob in self.client.list_blobs(bucket, prefix=key):
            if blob.name == key or blob.name.startswith(key + "/"):
                dest = target / blob.name[len(key):].lstrip("/") if blob.name != key else target
                dest.parent.mkdir(parents=True, exist_ok=True)
                blob.download_to_filename(str(dest))

    def upload(self, source: Path, uri: str) -> None:
        bucket, key = self.split(uri)
        files = [source] if source.is_file() else [Path(p) / n for p, _, names in os.walk(source) for n in names]
        for file in files:
            name = key if file == source else f"{key}/{file.relative_to(source)}"
            self.client.bucket(bucket).blob(name).upload_from_filename(str(file))


class KfpStandIn:
    def __init__(self, workdir: Path, engine: ContainerEngine, volumes: list[str | Path] = (),
                 publish_logs: bool = True, max_parallel: int | None = None,
                 pod_env: dict[str, str] | None = None, network: str = "none") -> None:
        """`volumes`: host directories every task's container sees at the same path (what the
        compiled spec names as data root, serving root, span store). They and `workdir` must be
        paths the engine's host sees: under /tmp, which the with-stack chroot shares. `pod_env`
        and `network`: what every task's container gets besides (ContainerEngine.run)."""
        self.workdir = Path(workdir)
        self.local_store = LocalObjectStore(self.workdir / "objectstore")
        self.gcs_store: GcsObjectStore | None = None
        self.pod_env, self.network = dict(pod_env or {}), network
        self.engine, self.publish_logs = engine, publish_logs
        self.volumes = [str(v) for v in volumes]
        for volume in self.volumes:   # a volume exists before the pod starts (a PersistentVolume is provisioned)
            os.makedirs(volume, exist_ok=True)
        self.max_parallel = max_parallel or os.cpu_count() or 1
        self.artifacts: dict[int, dict] = {}        # MLMD: id -> {uri, custom_properties, name}
        self.cache: dict[str, dict[str, int]] = {}  # fingerprint -> outputs of that execution
        self.tasks_outputs: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self.workdir.mkdir(parents=True, exist_ok=True)

    # --- API server ------------------------------------------------------------------------------
    @staticmethod
    def upload(path: Path) -> tuple[pb.PipelineSpec, dict]:
        spec, platform = None, {}
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if not doc:
                continue
            if "platforms" in doc and "kubernetes" in doc["platforms"]:
                platform = doc["platforms"]["kubernetes"]
                continue
            candidate = pb.PipelineSpec()
            try:
                json_format.ParseDict(doc, candidate)
            except json_format.ParseError:
                continue
            if candidate.pipeline_info.name and candidate.HasField("root"):
                if spec is not None:
                    raise Rejected("multiple pipeline specs provided")
                spec = candidate
        if spec is None:
            raise Rejected("unknown template format")
        if spec.schema_version != SCHEMA_VERSION:
            raise Rejected(f"KFP only supports schema version 2.1.0, but the pipeline spec has "
                           f"version {spec.schema_version}")
        if not NAME_PATTERN.fullmatch(spec.pipeline_info.name):
            raise Rejected("invalid v2 pipeline spec: name should consist of lower case alphanumeric "
                           "characters, '-' or '.'")
        return spec, platform

    @staticmethod
    def check_compilable(spec: pb.PipelineSpec) -> None:
        for name, component in spec.components.items():
            executor = spec.deployment_spec.fields["executors"].struct_value.fields.get(component.executor_label)
            if executor is None:
                continue
            kinds = set(executor.struct_value.fields)
            if "resolver" in kinds:
                raise Rejected("resolver executors not implemented")
            if not kinds & {"container", "importer"}:
                raise Rejected(f"executor(label={component.executor_label!r}): non-container and "
                               "non-importer executor not implemented")

    @staticmethod
    def root_values(spec: pb.PipelineSpec, values: dict[str, Any]) -> dict[str, struct_pb2.Value]:
        declared = spec.root.input_definitions.parameters
        undeclared = sorted(set(values) - set(declared))
        if undeclared:   # v2_template.go: a run may only set parameters the pipeline declares
            raise Rejected(f"parameter(s) provided are not required by pipeline: {', '.join(undeclared)}")
        result = {}
        for name, param in declared.items():
            if name in values:
                ptype = pb.ParameterType.ParameterTypeEnum.Name(param.parameter_type)
                if ptype == "PARAMETER_TYPE_ENUM_UNSPECIFIED":
                    raise Rejected(f"input parameter {name} has unspecified type")
                value = struct_pb2.Value()
                json_format.ParseDict(values[name], value)
                want = {"STRING": "string_value", "NUMBER_DOUBLE": "number_value",
                        "NUMBER_INTEGER": "number_value", "BOOLEAN": "bool_value"}.get(ptype)
                if want and value.WhichOneof("kind") != want:
                    raise Rejected(f"input parameter {name} requires type {ptype}")
                result[name] = value
            elif param.HasField("default_value"):
                result[name] = param.default_value
            elif not param.is_optional:
                raise Rejected(f"parameter {name} is not optional, yet has neither default value "
                               "nor user provided value")
        return result

    # --- a run -----------------------------------------------------------------------------------
    def run(self, spec_path: Path, parameters: dict[str, Any] | None = None,
            pipeline_root: str = "minio://mlpipeline/v2/artifacts") -> RunResult:
        spec, platform = self.upload(spec_path)
        self.check_compilable(spec)
        run_id = str(uuid.uuid4())
        values = self.root_values(spec, parameters or {})
        run_root = f"{pipeline_root.rstrip('/')}/{spec.pipeline_info.name}/{run_id}"
        bucket = prefixed_bucket(pipeline_root)
        upstream = self.upstream(spec)
        self.order(spec)   # a cycle is refused before anything runs
        result = RunResult(run_id=run_id, tasks={})
        started: set[str] = set()
        with concurrent.futures.ThreadPoolExecutor(self.max_parallel) as pool:
            running: dict[concurrent.futures.Future, str] = {}
            while True:
                done = {n for n, t in result.tasks.items() if t.state != "FAILED"}
                if not result.error:   # failFast: nothing new starts after a failure
                    ready = sorted(n for n in upstream if n not in started and upstream[n] <= done)
                    for name in ready[:self.max_parallel - len(running)]:
                        started.add(name)
                        running[pool.submit(self.run_task_or_fail, spec, name, values, run_root, run_id,
                                            bucket)] = name
                if not running:
                    break
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: running[f]):
                    name = running.pop(future)
                    result.tasks[name] = task = future.result()
                    log.info("task %s: %s (%.1f s)", name, task.state, task.finished - task.started)
                    if task.state == "FAILED" and not result.error:
                        result.error = f"task {name} failed: {task.log[-4000:]}"
        return result

    def run_task_or_fail(self, spec: pb.PipelineSpec, task_name: str, values: dict, run_root: str,
                         run_id: str, bucket: str) -> TaskResult:
        try:
            return self.run_task(spec, task_name, spec.root.dag.tasks[task_name], values, run_root, run_id, bucket)
        except Rejected as e:
            return TaskResult(task_name, "FAILED", {}, str(e))

    @staticmethod
    def upstream(spec: pb.PipelineSpec) -> dict[str, set[str]]:
        """Each task's dependencies: dependentTasks and the producers of its input artifacts."""
        return {name: set(t.dependent_tasks) | {a.task_output_artifact.producer_task
                                                for a in t.inputs.artifacts.values()
                                                if a.HasField("task_output_artifact")}
                for name, t in spec.root.dag.tasks.items()}

    @classmethod
    def order(cls, spec: pb.PipelineSpec) -> list[str]:
        """A topological order of the tasks; refuses a cycle or an unknown dependency."""
        upstream = cls.upstream(spec)
        done: list[str] = []
        while len(done) < len(upstream):
            ready = sorted(n for n in upstream if n not in done and upstream[n] <= set(done))
            if not ready:
                raise Rejected("the DAG has a cycle or an unknown dependency")
            done += ready
        return done

    def resolve_parameter(self, spec_param: Any, values: dict, run_id: str, task_name: str) -> struct_pb2.Value:
        kind = spec_param.WhichOneof("kind")
        if kind == "component_input_parameter":
            return values[spec_param.component_input_parameter]
        if kind == "runtime_value":
            rv = spec_param.runtime_value
            if rv.WhichOneof("value") != "constant":
                raise Rejected("param runtime value spec of type "
                               "*pipelinespec.ValueOrRuntimeParameter_ConstantValue not implemented")
            placeholders = {"{{$.pipeline_job_uuid}}": run_id, "{{$.pipeline_job_name}}": run_id,
                            "{{$.pipeline_task_name}}": task_name}
            if rv.constant.WhichOneof("kind") == "string_value" and rv.constant.string_value in placeholders:
                return struct_pb2.Value(string_value=placeholders[rv.constant.string_value])
            return rv.constant
        raise Rejected(f"parameter spec of type {kind} not implemented yet")

    def input_artifact(self, artifact_id: int) -> pb.RuntimeArtifact:
        stored = self.artifacts[artifact_id]
        artifact = pb.RuntimeArtifact(name=str(artifact_id), uri=stored["uri"])
        artifact.type.instance_schema = ""   # GetOutputArtifactsByExecutionId: Schema ""
        json_format.ParseDict({k: from_mlmd_value(v) for k, v in stored["custom_properties"].items()},
                              artifact.metadata)
        return artifact

    def run_task(self, spec: pb.PipelineSpec, task_name: str, task: Any, values: dict,
                 run_root: str, run_id: str, bucket: str) -> TaskResult:
        component = spec.components[task.component_ref.name]
        executor = json_format.MessageToDict(
            spec.deployment_spec.fields["executors"].struct_value.fields[component.executor_label].struct_value)
        container = executor["container"]
        executor_input = pb.ExecutorInput()
        for name, param in task.inputs.parameters.items():
            executor_input.inputs.parameter_values[name].CopyFrom(
                self.resolve_parameter(param, values, run_id, task_name))
        for name, art in task.inputs.artifacts.items():
            producer = art.task_output_artifact
            upstream = self.tasks_outputs[producer.producer_task]
            executor_input.inputs.artifacts[name].artifacts.append(
                self.input_artifact(upstream[producer.output_artifact_key]))
        task_root = f"{run_root}/{task_name}/{uuid.uuid4()}"
        outputs = dict(component.output_definitions.artifacts)
        if self.publish_logs:
            outputs[EXECUTOR_LOGS] = pb.ComponentOutputsSpec.ArtifactSpec(
                artifact_type=pb.ArtifactTypeSchema(schema_title="system.Artifact"))
        for name, out in outputs.items():
            artifact = executor_input.outputs.artifacts[name].artifacts.add(name=name, uri=f"{task_root}/{name}")
            artifact.type.CopyFrom(out.artifact_type)
            if out.HasField("metadata"):
                artifact.metadata.CopyFrom(out.metadata)
        executor_input.outputs.output_file = f"{local_path(task_root)}/output_metadata.json"

        fingerprint = None
        if task.caching_options.enable_cache:
            fingerprint = self.fingerprint(executor_input, container)
            if fingerprint in self.cache:
                self.tasks_outputs[task_name] = self.cache[fingerprint]
                now = time.monotonic()
                return TaskResult(task_name, "CACHED", self.cache[fingerprint], started=now, finished=now)
        started = time.monotonic()
        state, output, produced = self.launch(task_name, component, container, executor_input, bucket)
        if state == "COMPLETE":
            self.tasks_outputs[task_name] = produced
            if fingerprint:
                self.cache[fingerprint] = produced
        return TaskResult(task_name, state, produced, output, json_format.MessageToDict(executor_input),
                          started=started, finished=time.monotonic())

    @staticmethod
    def fingerprint(executor_input: pb.ExecutorInput, container: dict) -> str:
        """GenerateCacheKey + GenerateFingerPrint (cacheutils/cache.go)."""
        key = {
            "inputArtifactNames": {k: {"artifactNames": [a.name for a in v.artifacts]}
                                   for k, v in executor_input.inputs.artifacts.items()},
            "inputParameterValues": {k: json_format.MessageToDict(v)
                                     for k, v in executor_input.inputs.parameter_values.items()},
            "outputArtifactsSpec": {k: {"name": v.artifacts[0].name,
                                        "type": json_format.MessageToDict(v.artifacts[0].type),
                                        "metadata": json_format.MessageToDict(v.artifacts[0].metadata)}
                                    for k, v in executor_input.outputs.artifacts.items() if v.artifacts},
            "containerSpec": {"image": container["image"],
                              "cmdArgs": container.get("command", []) + container.get("args", [])},
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    # --- the launcher ----------------------------------------------------------------------------
    def object_store(self, uri: str) -> LocalObjectStore | GcsObjectStore:
        if not uri.startswith("gs://"):
            return self.local_store
        if self.gcs_store is None:
            self.gcs_store = GcsObjectStore()
        return self.gcs_store

    @staticmethod
    def placeholders(executor_input: pb.ExecutorInput) -> dict[str, str]:
        """The launcher's placeholder values (launcher_v2.go, getPlaceholders)."""
        values = {"{{$}}": json_format.MessageToJson(executor_input, indent=None)}
        for name, lst in executor_input.inputs.artifacts.items():
            values[f"{{{{$.inputs.artifacts['{name}'].uri}}}}"] = lst.artifacts[0].uri
            values[f"{{{{$.inputs.artifacts['{name}'].path}}}}"] = local_path(lst.artifacts[0].uri)
        for name, lst in executor_input.outputs.artifacts.items():
            values[f"{{{{$.outputs.artifacts['{name}'].uri}}}}"] = lst.artifacts[0].uri
            values[f"{{{{$.outputs.artifacts['{name}'].path}}}}"] = local_path(lst.artifacts[0].uri)
        for name, value in executor_input.inputs.parameter_values.items():
            kind = value.WhichOneof("kind")
            values[f"{{{{$.inputs.parameters['{name}']}}}}"] = (
                value.string_value if kind == "string_value" else
                go_format_float(value.number_value) if kind == "number_value" else
                json.dumps(json_format.MessageToDict(value)))
        return values

    def launch(self, task_name: str, component: Any, container: dict, executor_input: pb.ExecutorInput,
               bucket: str) -> tuple[str, str, dict[str, int]]:
        with_defaults = pb.ExecutorInput()
        with_defaults.CopyFrom(executor_input)
        for name, param in component.input_definitions.parameters.items():   # addDefaultParams
            if name not in with_defaults.inputs.parameter_values and param.HasField("default_value"):
                with_defaults.inputs.parameter_values[name].CopyFrom(param.default_value)
        placeholders = self.placeholders(with_defaults)

        def substitute(arg: str) -> str:
            for key, text in placeholders.items():
                arg = arg.replace(key, text)
            return arg

        mount = local_mount(bucket)
        with tempfile.TemporaryDirectory(prefix="pod-", dir=self.workdir) as pod:  # the pod's /minio or /gcs

            def pod_path(uri: str, pod: str = pod) -> Path:
                return Path(pod) / local_path(uri)[len(mount) + 1:]

            for lst in executor_input.inputs.artifacts.values():                    # downloadArtifacts
                for artifact in lst.artifacts:
                    self.object_store(artifact.uri).download(artifact.uri, pod_path(artifact.uri))
            for lst in executor_input.outputs.artifacts.values():                   # prepareOutputFolders
                pod_path(lst.artifacts[0].uri).parent.mkdir(parents=True, exist_ok=True)
            # Kubernetes: `command` replaces the image's ENTRYPOINT, `args` its CMD.
            command = container.get("command")
            exited = self.engine.run(
                container["image"], entrypoint=[substitute(a) for a in command] if command else None,
                args=[substitute(a) for a in container.get("args", [])],
                binds={pod: mount, **{v: v for v in self.volumes}}, env=self.pod_env, network=self.network,
                name=f"kfp-{task_name.lower()}-{uuid.uuid4().hex[:8]}")
            output = exited.log
            if EXECUTOR_LOGS in executor_input.outputs.artifacts:                   # getLogWriter
                logs = pod_path(executor_input.outputs.artifacts[EXECUTOR_LOGS].artifacts[0].uri)
                logs.write_text(output)
            if exited.status != 0:
                return "FAILED", output, {}
            output_file = Path(pod) / executor_input.outputs.output_file[len(mount) + 1:]
            executor_output = pb.ExecutorOutput()
            if output_file.exists():                                                # getExecutorOutputFile
                json_format.Parse(output_file.read_text(), executor_output)
            produced = {}
            try:
                for name, lst in executor_input.outputs.artifacts.items():          # uploadOutputArtifacts
                    artifact = pb.RuntimeArtifact()
                    artifact.CopyFrom(lst.artifacts[0])
                    merged = executor_output.artifacts.get(name)
                    if name != EXECUTOR_LOGS and merged is not None and merged.artifacts:
                        src = merged.artifacts[0]                                  # mergeRuntimeArtifacts
                        if src.uri:
                            artifact.uri = src.uri
                        for k, v in src.metadata.fields.items():
                            artifact.metadata.fields[k].CopyFrom(v)
                    key_from_uri(artifact.uri, bucket)
                    local = pod_path(artifact.uri)
                    if local.exists():
                        self.object_store(artifact.uri).upload(local, artifact.uri)
                    produced[name] = self.record(name, artifact)
            except Rejected as e:
                return "FAILED", f"{output}\nfailed to upload or record output artifacts: {e}", {}
        return "COMPLETE", output, produced

    def record(self, output_name: str, artifact: pb.RuntimeArtifact) -> int:
        """RecordArtifact (metadata/client.go) via toMLMDArtifact (converter.go): every artifact
        also gets `display_name` (the output's name unless set) and `store_session_info`."""
        props = {k: to_mlmd_value(v) for k, v in artifact.metadata.fields.items()}
        props.setdefault("display_name", {"string": output_name})
        props["store_session_info"] = {"string": GCS_SESSION_INFO if artifact.uri.startswith("gs://")
                                       else MINIO_SESSION_INFO}
        with self._lock:
            artifact_id = len(self.artifacts) + 1
            self.artifacts[artifact_id] = {"uri": artifact.uri, "custom_properties": props}
        return artifact_id

    def artifact_dir(self, artifact_id: int) -> Path:
        """Where an artifact's files are in the object store."""
        return self.local_store.path(self.artifacts[artifact_id]["uri"])

    def artifact_uri(self, artifact_id: int) -> str:
        return self.artifacts[artifact_id]["uri"]
