"""TF Serving's configuration files: a text-format ModelServerConfig (`--model_config_file`),
BatchingParameters (`--batching_parameters_file`) and MonitoringConfig
(`--monitoring_config_file`), read with protobuf's own text-format parser, so a file that works
for `tensorflow_model_server` works here.

ModelServerConfig comes from the tensorflow-serving-api package. BatchingParameters and
MonitoringConfig are not in that package, so their descriptors are declared here with the field
names and numbers of tensorflow_serving/servables/tensorflow/session_bundle_config.proto and
tensorflow_serving/config/monitoring_config.proto.
"""
from __future__ import annotations

import functools
import os
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.batching import BatchingConfigError, BatchingParameters
from serving.errors import Error
from serving.model_manager import ModelConfig, VersionPolicy
from serving.request_log import LoggingConfig


class ConfigError(Error, ValueError):
    """A configuration file that cannot be used, with the file named in the message."""


def parse_model_server_config(text: str, source: str = "<config>") -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        # TF Serving's message, which its testBadModelConfig looks for.
        raise ConfigError(f"{source}: Error parsing text-format tensorflow.serving.ModelServerConfig: {e}") from None
    return config


def models_from_config_proto(config: Any, source: str = "<config>") -> list[ModelConfig]:
    if config.WhichOneof("config") == "custom_model_config":
        raise ConfigError(f"{source}: custom_model_config is not supported; use model_config_list")
    models = []
    for entry in config.model_config_list.config:
        if entry.model_platform and entry.model_platform != "tensorflow":
            raise ConfigError(f"{source}: model {entry.name!r}: model_platform {entry.model_platform!r} is not "
                              "supported (only 'tensorflow')")
        if not entry.name or not entry.base_path:
            raise ConfigError(f"{source}: every config needs a name and a base_path")
        policy = entry.model_version_policy
        kind = policy.WhichOneof("policy_choice")
        if kind == "all":
            version_policy = VersionPolicy("all")
        elif kind == "specific":
            version_policy = VersionPolicy("specific", specific=tuple(policy.specific.versions))
        else:
            num = policy.latest.num_versions if kind == "latest" else 1
            version_policy = VersionPolicy("latest", latest=num or 1)
        base = entry.base_path
        if not os.path.isabs(base) and "://" not in base and source != "<config>":
            base = os.path.join(os.path.dirname(os.path.abspath(source)), base)
        labels = tuple(sorted((k, int(v)) for k, v in entry.version_labels.items()))
        models.append(ModelConfig(entry.name, base, version_policy, labels, _logging_config(entry, source)))
    return models


def _logging_config(entry: Any, source: str) -> LoggingConfig | None:
    """`logging_config` of one model: TFRecord files at filename_prefix, sampling_rate in [0, 1]."""
    if not entry.HasField("logging_config"):
        return None
    config = entry.logging_config
    if config.HasField("custom_logging_config"):
        raise ConfigError(f"{source}: model {entry.name!r}: logging_config.custom_logging_config is not "
                          "supported; use log_collector_config")
    prefix = config.log_collector_config.filename_prefix
    if not prefix:
        raise ConfigError(f"{source}: model {entry.name!r}: logging_config.log_collector_config.filename_prefix "
                          "is empty; it names where the request log files go")
    rate = config.sampling_config.sampling_rate
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{source}: model {entry.name!r}: logging_config.sampling_config.sampling_rate "
                          f"{rate} is outside [0, 1]")
    if not os.path.isabs(prefix) and "://" not in prefix and source != "<config>":
        prefix = os.path.join(os.path.dirname(os.path.abspath(source)), prefix)
    return LoggingConfig(prefix, rate)


def read_model_config_file(path: str) -> list[ModelConfig]:
    """`--model_config_file`: text-format ModelServerConfig (TF Serving's format); a file ending
    in .yaml/.yml is this project's YAML alternative."""
    if path.endswith((".yaml", ".yml")):
        from serving.model_manager import models_from_file
        return models_from_file(path)
    return models_from_config_proto(read_model_server_config(path), path)


def read_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """A text-format ModelServerConfig file, parsed; ConfigError names the file."""
    return parse_model_server_config(_read_text(path, "model config"), path)


def _read_text(path: str, what: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} file: {e}") from None


@functools.lru_cache(maxsize=1)
def _batching_message_class() -> type:
    file = descriptor_pb2.FileDescriptorProto(
        name="fmnist_serving/batching_parameters.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    message = file.message_type.add(name="BatchingParameters")
    wrapped = {"max_batch_size": (1, "Int64Value"), "batch_timeout_micros": (2, "Int64Value"),
               "max_enqueued_batches": (3, "Int64Value"), "num_batch_threads": (4, "Int64Value"),
               "thread_pool_name": (5, "StringValue"), "enable_large_batch_splitting": (8, "BoolValue"),
               "max_execution_batch_size": (9, "Int64Value")}
    F = descriptor_pb2.FieldDescriptorProto
    for name, (number, kind) in wrapped.items():
        message.field.add(name=name, number=number, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                          type_name=f".google.protobuf.{kind}")
    message.field.add(name="allowed_batch_sizes", number=6, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    from google.protobuf import wrappers_pb2  # noqa: F401  (registers wrappers.proto in the pool)
    return _declared_class(file, "tensorflow.serving.BatchingParameters")


def _declared_class(file: descriptor_pb2.FileDescriptorProto, full_name: str) -> type:
    """The message class of a proto declared here (not shipped by tensorflow-serving-api), added to
    the default pool once."""
    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName(full_name)
    except KeyError:
        pool.Add(file)
        descriptor = pool.FindMessageTypeByName(full_name)
    return message_factory.GetMessageClass(descriptor)


@functools.lru_cache(maxsize=1)
def _monitoring_message_class() -> type:
    """tensorflow_serving/config/monitoring_config.proto (MonitoringConfig { PrometheusConfig
    prometheus_config = 1 }, PrometheusConfig { bool enable = 1; string path = 2 }): the pip
    package tensorflow-serving-api does not ship monitoring_config_pb2, so it is declared here
    with upstream's names and numbers."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="fmnist_serving/monitoring_config.proto",
                                              package="tensorflow.serving", syntax="proto3")
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                         type_name=".tensorflow.serving.PrometheusConfig")
    return _declared_class(file, "tensorflow.serving.MonitoringConfig")


def parse_monitoring_config(text: str, source: str = "<monitoring>") -> str | None:
    """The Prometheus path a MonitoringConfig text proto asks for, None when Prometheus is off.

    As tensorflow_model_server (server.cc): `prometheus_config { enable: true }` exposes the
    metrics on the REST port at `path`, PrometheusExporter::kPrometheusPath when it is empty."""
    from serving.metrics import DEFAULT_PATH

    proto = _monitoring_message_class()()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        raise ConfigError(f"{source}: Error parsing text-format tensorflow.serving.MonitoringConfig: {e}") from None
    if not proto.prometheus_config.enable:
        return None
    path = proto.prometheus_config.path or DEFAULT_PATH
    if not path.startswith("/"):
        raise ConfigError(f"{source}: prometheus_config.path must start with '/', got {path!r}")
    return path


def read_monitoring_config_file(path: str | None) -> str | None:
    """--monitoring_config_file: the Prometheus metrics path, or None (no file, or not enabled)."""
    if not path:
        return None
    return parse_monitoring_config(_read_text(path, "monitoring config"), path)


def parse_batching_parameters(text: str, source: str = "<batching>") -> BatchingParameters:
    """A text-format BatchingParameters. A field left out keeps TF Serving's default for it
    (bundle_factory_util.h GetQueueOptions / CreateBatchScheduler only set what the proto has);
    values TF Serving refuses when it builds the scheduler are a ConfigError with its text."""
    proto = _batching_message_class()()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        raise ConfigError(f"{source}: Error parsing text-format tensorflow.serving.BatchingParameters: {e}") from None
    fields = {f.name for f, _ in proto.ListFields()}
    values: dict[str, Any] = {name: getattr(proto, name).value for name in fields if name in (
        "max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads", "thread_pool_name",
        "enable_large_batch_splitting", "max_execution_batch_size")}
    values["allowed_batch_sizes"] = tuple(proto.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = proto.pad_variable_length_inputs
    try:
        return BatchingParameters(**values).validate()
    except BatchingConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def read_batching_parameters_file(path: str) -> BatchingParameters:
    return parse_batching_parameters(_read_text(path, "batching parameters"), path)


def read_session_config_file(path: str | None) -> Any:
    """--tensorflow_session_config_file: a text-format tensorflow.ConfigProto (empty when no path)."""
    from tensorflow.core.protobuf import config_pb2

    config = config_pb2.ConfigProto()
    if not path:
        return config
    try:
        text_format.Parse(_read_text(path, "session config"), config)
    except text_format.ParseError as e:
        raise ConfigError(f"{path}: Error parsing text-format tensorflow.ConfigProto: {e}") from None
    return config
