"""A stand-in for the open-source Kubeflow Pipelines 2.x backend, for tests: it runs a compiled
PipelineSpec YAML task by task, as the API server, driver and launcher would, with each task's
real container command in a subprocess of the same Python stack as the image.

Every behaviour copied names the file of kubeflow/pipelines it comes from (backend/src/...):

* Upload (apiserver/template/template.go, v2_template.go): the YAML's documents are read; the one
  that parses as a PipelineSpec with a name and a root is the spec, a document with
  `platforms.kubernetes` the platform spec; schemaVersion must be 2.1.0; the name must match the
  DNS-style pattern; a root parameter needs a value or a default and its type must match.
* Compile to Argo (v2/compiler/visitor.go, argocompiler/dag.go): resolver executors and any
  executor that is neither a container nor an importer are rejected.
* Driver (v2/driver/resolve.go, driver.go, cache.go; v2/cacheutils/cache.go): parameters resolve
  from the run's values or the root defaults (`componentInputParameter`) or from `runtimeValue.
  constant`, with the run placeholders substituted; the 2.0.0 `constantValue` form is "not
  implemented". Input artifacts come from ML Metadata: name = the MLMD id, type with an empty
  instance schema, metadata as metadata/converter.go stores and reads it back. Outputs are
  provisioned under `<root>/<pipeline>/<run id>/<task>/<uuid>/<output>` plus the `executor-logs`
  artifact; the output metadata file sits in the task root's local path. With caching enabled, a
  fingerprint of inputs, output specs, command and image that matches an earlier successful
  execution reuses its outputs instead of running.
* Launcher (v2/component/launcher_v2.go): parameter defaults are added; `{{$}}` and the
  artifact/parameter placeholders are substituted in command and args; input artifacts are
  downloaded to their local paths (LocalPathForURI: minio:// -> /minio/...), output folders
  created, the command run, the output metadata file read (absent -> empty), artifact URIs and
  metadata merged from it (mergeRuntimeArtifacts), local output paths uploaded, and the artifacts
  recorded in ML Metadata (converter.go: a null value fails).

The pod's private file system is reproduced with a private mount namespace per task in which a
fresh directory is bind-mounted at /minio (needs root, as the project's stack chroot has), so
whatever a step writes outside its uploaded outputs is lost, as in a pod. The object store is a
local directory (`<workdir>/objectstore/<bucket>/<key>`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

SCHEMA_VERSION = "2.1.0"
NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LOCAL_MOUNT = "/minio"
EXECUTOR_LOGS = "executor-logs"

# Runs `argv[2:]` with a private mount namespace in which argv[1] is bind-mounted at /minio.
_POD = """import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
os.unshare(os.CLONE_NEWNS)
if libc.mount(sys.argv[1].encode(), b"/minio", None, 4096, None) != 0:  # MS_BIND
    raise OSError(ctypes.get_errno(), "bind mount of the pod's /minio failed")
os.execvp(sys.argv[2], sys.argv[2:])
"""


def image_environment(dockerfile: Path) -> dict[str, str]:
    """The environment a step's container starts with: the Dockerfile's ENV lines, plus the PATH
    and HOME a container has (here: those of this stack, whose Python stands in for the image's)."""
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "LANG": "C.UTF-8"}
    for line in Path(dockerfile).read_text().splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in line[4:].split())
    return env


class Rejected(Exception):
    """What the backend refuses, with its own message."""


@dataclasses.dataclass
class TaskResult:
    name: str
    state: str                       # COMPLETE, CACHED, FAILED
    outputs: dict[str, int]          # output key -> MLMD artifact id
    log: str = ""
    executor_input: dict | None = None


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


class KfpStandIn:
    def __init__(self, workdir: Path, python: str = sys.executable, cwd: str | None = None,
                 env: dict[str, str] | None = None, publish_logs: bool = True) -> None:
        self.workdir = Path(workdir)
        self.store = self.workdir / "objectstore"
        self.python, self.cwd, self.publish_logs = python, cwd, publish_logs
        self.env = dict(os.environ if env is None else env)
        self.artifacts: dict[int, dict] = {}        # MLMD: id -> {uri, custom_properties, name}
        self.cache: dict[str, dict[str, int]] = {}  # fingerprint -> outputs of that execution
        os.makedirs(LOCAL_MOUNT, exist_ok=True)
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
        result = {}
        for name, param in spec.root.input_definitions.parameters.items():
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
        result = RunResult(run_id=run_id, tasks={})
        for task_name in self.order(spec):
            task = spec.root.dag.tasks[task_name]
            try:
                result.tasks[task_name] = self.run_task(spec, task_name, task, values, run_root, run_id)
            except Rejected as e:
                result.tasks[task_name] = TaskResult(task_name, "FAILED", {}, str(e))
            if result.tasks[task_name].state == "FAILED":
                result.error = f"task {task_name} failed: {result.tasks[task_name].log[-4000:]}"
                break
        return result

    @staticmethod
    def order(spec: pb.PipelineSpec) -> list[str]:
        tasks = spec.root.dag.tasks
        upstream = {name: set(t.dependent_tasks) | {a.task_output_artifact.producer_task
                                                    for a in t.inputs.artifacts.values()
                                                    if a.HasField("task_output_artifact")}
                    for name, t in tasks.items()}
        done: list[str] = []
        while len(done) < len(tasks):
            ready = sorted(n for n in tasks if n not in done and upstream[n] <= set(done))
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
                 run_root: str, run_id: str) -> TaskResult:
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
                return TaskResult(task_name, "CACHED", self.cache[fingerprint])
        state, log, produced = self.launch(component, container, executor_input)
        if state == "COMPLETE":
            self.tasks_outputs[task_name] = produced
            if fingerprint:
                self.cache[fingerprint] = produced
        return TaskResult(task_name, state, produced, log, json_format.MessageToDict(executor_input))

    @property
    def tasks_outputs(self) -> dict[str, dict[str, int]]:
        if not hasattr(self, "_tasks_outputs"):
            self._tasks_outputs: dict[str, dict[str, int]] = {}
        return self._tasks_outputs

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
    def object_path(self, uri: str) -> Path:
        scheme, rest = uri.split("://", 1)
        return self.store / rest

    def launch(self, component: Any, container: dict, executor_input: pb.ExecutorInput
               ) -> tuple[str, str, dict[str, int]]:
        with_defaults = pb.ExecutorInput()
        with_defaults.CopyFrom(executor_input)
        for name, param in component.input_definitions.parameters.items():   # addDefaultParams
            if name not in with_defaults.inputs.parameter_values and param.HasField("default_value"):
                with_defaults.inputs.parameter_values[name].CopyFrom(param.default_value)
        placeholders = {"{{$}}": json_format.MessageToJson(with_defaults, indent=None)}
        for name, lst in with_defaults.inputs.artifacts.items():
            placeholders[f"{{{{$.inputs.artifacts['{name}'].uri}}}}"] = lst.artifacts[0].uri
            placeholders[f"{{{{$.inputs.artifacts['{name}'].path}}}}"] = local_path(lst.artifacts[0].uri)
        for name, lst in with_defaults.outputs.artifacts.items():
            placeholders[f"{{{{$.outputs.artifacts['{name}'].uri}}}}"] = lst.artifacts[0].uri
            placeholders[f"{{{{$.outputs.artifacts['{name}'].path}}}}"] = local_path(lst.artifacts[0].uri)
        for name, value in with_defaults.inputs.parameter_values.items():
            kind = value.WhichOneof("kind")
            text = (value.string_value if kind == "string_value" else
                    repr(value.number_value).removesuffix(".0") if kind == "number_value" else
                    json.dumps(json_format.MessageToDict(value)))
            placeholders[f"{{{{$.inputs.parameters['{name}']}}}}"] = text

        def substitute(arg: str) -> str:
            for key, text in placeholders.items():
                arg = arg.replace(key, text)
            return arg

        command = [substitute(a) for a in container.get("command", []) + container.get("args", [])]
        with tempfile.TemporaryDirectory(prefix="pod-", dir=self.workdir) as pod:  # the pod's disk

            def pod_path(uri: str, pod: str = pod) -> Path:
                return Path(pod) / local_path(uri)[len(LOCAL_MOUNT) + 1:]

            for lst in executor_input.inputs.artifacts.values():                    # downloadArtifacts
                for artifact in lst.artifacts:
                    source = self.object_path(artifact.uri)
                    target = pod_path(artifact.uri)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if source.is_dir():
                        shutil.copytree(source, target)
                    elif source.exists():
                        shutil.copy(source, target)
            for lst in executor_input.outputs.artifacts.values():                   # prepareOutputFolders
                pod_path(lst.artifacts[0].uri).parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run([self.python, "-c", _POD, pod, *command], cwd=self.cwd, env=self.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800)
            log = proc.stdout
            if EXECUTOR_LOGS in executor_input.outputs.artifacts:                   # getLogWriter
                logs = pod_path(executor_input.outputs.artifacts[EXECUTOR_LOGS].artifacts[0].uri)
                logs.write_text(log)
            if proc.returncode != 0:
                return "FAILED", log, {}
            output_file = Path(pod) / executor_input.outputs.output_file[len(LOCAL_MOUNT) + 1:]
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
                    local = pod_path(artifact.uri) if artifact.uri.startswith("minio://") else None
                    if local is not None and local.exists():
                        target = self.object_path(artifact.uri)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        (shutil.copytree if local.is_dir() else shutil.copy)(local, target)
                    produced[name] = self.record(artifact)
            except Rejected as e:
                return "FAILED", f"{log}\nunable to produce MLMD artifact: {e}", {}
        return "COMPLETE", log, produced

    def record(self, artifact: pb.RuntimeArtifact) -> int:
        """RecordArtifact (metadata/client.go) via toMLMDArtifact (converter.go)."""
        props = {k: to_mlmd_value(v) for k, v in artifact.metadata.fields.items()}
        artifact_id = len(self.artifacts) + 1
        self.artifacts[artifact_id] = {"uri": artifact.uri, "custom_properties": props}
        return artifact_id

    def artifact_dir(self, artifact_id: int) -> Path:
        """Where an artifact's files are in the object store."""
        return self.object_path(self.artifacts[artifact_id]["uri"])
