"""Container entrypoint of every compiled step: adapts what a KFP v2 launcher hands over, then runs
TFX's own v2 entrypoint (tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor).

TFX's entrypoint is written against Vertex AI's launcher. The open-source KFP 2.x launcher hands
over an ExecutorInput that differs in ways that make it fail (each cited from kubeflow/pipelines):

* Input artifacts come from KFP's own ML Metadata store with an empty type schema
  (metadata/client.go, GetOutputArtifactsByExecutionId: `Schema: ""`); TFX rebuilds the artifact
  class from the schema's title. -> the type is restored from the component's inputs spec, which
  the compiled spec passes as --json_serialized_inputs_spec_args.
* Their custom properties come back converted by metadata/converter.go (lists and structs wrapped
  as {"list": ...} / {"struct": ...}); a null value cannot be stored at all
  (StructValueToMLMDValue) and fails the task. -> unwrapped on the way in, nulls dropped on the way
  out.
* The driver adds an `executor-logs` output of type `system.Artifact` to every task
  (driver/driver.go, provisionOutputs), which TFX cannot import. -> removed; the launcher writes it.
* Artifact URIs use the pipeline root's scheme; `minio://` and `s3://` are not TensorFlow file
  systems, but the launcher downloads inputs to, and uploads outputs from, a local path derived from
  the URI (component/launcher_v2.go, LocalPathForURI: /minio/..., /s3/..., /gcs/...). -> TFX is
  given those local paths and the ExecutorOutput reports the original URIs, since the launcher
  uploads from the path of the URI it reads back (uploadOutputArtifacts). gs:// stays as it is:
  TensorFlow reads and writes it natively, on Vertex too.
* `lifecycle.preCacheCheck` is never run by the open-source driver, so ExampleGen's span and
  fingerprint driver would be skipped. -> with --example-gen-driver it runs here first, writing the
  same output metadata file TFX's entrypoint then reads.

On Vertex AI none of these apply and the adaptation changes nothing.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

EXECUTOR_LOGS = "executor-logs"
# What the open-source launcher can fetch, and the local path it uses (LocalPathForURI).
LOCAL_PREFIX = {"minio://": "/minio/", "s3://": "/s3/"}
_WRAPPERS = ("list", "struct")


def local_path(uri: str) -> str:
    """The launcher's local path for a minio:// or s3:// URI; other URIs are returned unchanged."""
    for scheme, prefix in LOCAL_PREFIX.items():
        if uri.startswith(scheme):
            return prefix + uri[len(scheme):]
    return uri


def _unwrap(value: Any) -> Any:
    """Undo converter.go's wrapping of list and struct values ({"list": [...]})."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _WRAPPERS:
        return _unwrap(next(iter(value.values())))
    return value


def _type_title(artifact_type: Any) -> str:
    kind = artifact_type.WhichOneof("kind")
    if kind == "schema_title":
        return artifact_type.schema_title
    if kind == "instance_schema" and "title:" in artifact_type.instance_schema:
        return artifact_type.instance_schema
    return ""


def adapt_input(executor_input: Any, inputs_spec: Any | None) -> dict[str, str]:
    """Rewrite `executor_input` in place for TFX; returns {local path: original URI} of outputs."""
    from google.protobuf import json_format

    executor_input.outputs.artifacts.pop(EXECUTOR_LOGS, None)
    for key, artifact_list in executor_input.inputs.artifacts.items():
        declared = inputs_spec.artifacts.get(key) if inputs_spec is not None else None
        for artifact in artifact_list.artifacts:
            if not _type_title(artifact.type) and declared is not None:
                artifact.type.CopyFrom(declared.artifact_type)
            metadata = {k: _unwrap(v) for k, v in json_format.MessageToDict(artifact.metadata).items()
                        if v is not None}
            artifact.metadata.Clear()
            json_format.ParseDict(metadata, artifact.metadata, ignore_unknown_fields=True)
            artifact.uri = local_path(artifact.uri)
    originals = {}
    for artifact_list in executor_input.outputs.artifacts.values():
        for artifact in artifact_list.artifacts:
            local = local_path(artifact.uri)
            if local != artifact.uri:
                originals[local] = artifact.uri
                artifact.uri = local
    return originals


def adapt_output(executor_output: Any, originals: dict[str, str]) -> None:
    """Report original URIs and drop null metadata values, which KFP cannot store."""
    from google.protobuf import json_format

    for artifact_list in executor_output.artifacts.values():
        for artifact in artifact_list.artifacts:
            artifact.uri = originals.get(artifact.uri, artifact.uri)
            metadata = {k: v for k, v in json_format.MessageToDict(artifact.metadata).items()
                        if v is not None}
            artifact.metadata.Clear()
            json_format.ParseDict(metadata, artifact.metadata)


def merge_driver_output(executor_input: Any) -> None:
    """Give the executor the output artifact properties the driver set (span, fingerprint...).

    TFX's entrypoint reads only the driver's exec properties back from the output metadata file;
    the artifact properties reach the executor through the launcher, as on Vertex.
    """
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.dsl.io import fileio

    with fileio.open(executor_input.outputs.output_file, "rb") as f:
        driver_output = json_format.Parse(f.read(), pipeline_spec_pb2.ExecutorOutput(),
                                          ignore_unknown_fields=True)
    for key, artifact_list in driver_output.artifacts.items():
        if key in executor_input.outputs.artifacts and artifact_list.artifacts:
            target = executor_input.outputs.artifacts[key].artifacts[0]
            for name, value in artifact_list.artifacts[0].metadata.fields.items():
                target.metadata.fields[name].CopyFrom(value)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--example-gen-driver", action="store_true",
                        help="run TFX's file-based ExampleGen driver before the executor")
    parser.add_argument("--executor_class_path", required=True)
    parser.add_argument("--json_serialized_invocation_args", required=True)
    parser.add_argument("--json_serialized_inputs_spec_args")
    return parser.parse_known_args(argv)  # the rest are Beam arguments, as for TFX


def run(argv: list[str]) -> None:
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.dsl.io import fileio
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor
    from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver

    args, beam_args = parse_args(argv)
    executor_input = json_format.Parse(args.json_serialized_invocation_args,
                                       pipeline_spec_pb2.ExecutorInput(), ignore_unknown_fields=True)
    inputs_spec = None
    if args.json_serialized_inputs_spec_args:
        inputs_spec = json_format.Parse(args.json_serialized_inputs_spec_args,
                                        pipeline_spec_pb2.ComponentInputsSpec(), ignore_unknown_fields=True)
    originals = adapt_input(executor_input, inputs_spec)
    if args.example_gen_driver:
        driver._run_driver(executor_input, inputs_spec)  # what Vertex runs as the pre-cache check
        merge_driver_output(executor_input)
    args.json_serialized_invocation_args = json_format.MessageToJson(executor_input)
    kubeflow_v2_run_executor.main((args, beam_args))

    output_file = executor_input.outputs.output_file
    with fileio.open(output_file, "rb") as f:
        executor_output = json_format.Parse(f.read(), pipeline_spec_pb2.ExecutorOutput(),
                                            ignore_unknown_fields=True)
    adapt_output(executor_output, originals)
    with fileio.open(output_file, "wb") as f:
        f.write(json_format.MessageToJson(executor_output))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run(sys.argv[1:])


if __name__ == "__main__":
    main()
