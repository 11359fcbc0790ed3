"""The files the model server and `fmnist models` read and write, without a server: TF Serving's
model config text with logging_config, request-log TFRecords a crash left torn, and the label
moves `fmnist models promote|rollback` write (the same moves on a live server under load are in
tests/e2e/test_model_labels.py; request logging on a live server in tests/e2e/test_request_log.py)."""
import pytest
from tensorflow_serving.apis import prediction_log_pb2

from pipeline import cli
from serving.config import ConfigError, models_from_config_proto, parse_model_server_config, read_model_config_file
from serving.request_log import LoggingConfig, read_logs


def test_logging_config_from_text_format(tmp_path):
    """TF Serving's field names; a relative filename_prefix is taken from the config file's
    directory like base_path; a sampling rate outside [0, 1] or an empty prefix names the field."""
    text = """model_config_list { config { name: "m" base_path: "models/m"
      logging_config { log_collector_config { type: "" filename_prefix: "logs/m" }
                       sampling_config { sampling_rate: 0.25 } } } }"""
    source = str(tmp_path / "models.config")
    [model] = models_from_config_proto(parse_model_server_config(text, source), source)
    assert model.logging == LoggingConfig(str(tmp_path / "logs" / "m"), 0.25)
    bad_rate = text.replace("0.25", "1.5")
    with pytest.raises(ConfigError, match="sampling_rate 1.5 is outside"):
        models_from_config_proto(parse_model_server_config(bad_rate, source), source)
    no_prefix = text.replace('filename_prefix: "logs/m"', "")
    with pytest.raises(ConfigError, match="filename_prefix is empty"):
        models_from_config_proto(parse_model_server_config(no_prefix, source), source)


def test_reader_skips_a_torn_last_record(tmp_path):
    """What a crash mid-write leaves: all complete records are read, the torn one is skipped."""
    import tensorflow as tf

    path = str(tmp_path / "x-1.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(3):
            entry = prediction_log_pb2.PredictionLog()
            entry.log_metadata.model_spec.name = f"m{i}"
            writer.write(entry.SerializeToString())
    with open(path, "r+b") as f:
        f.truncate(f.seek(0, 2) - 3)
    assert [e.log_metadata.model_spec.name for e in read_logs([path])] == ["m0", "m1"]

def _versions(tmp_path, *versions):
    base = tmp_path / "models" / "fmnist"
    for v in versions:
        (base / str(v)).mkdir(parents=True)
    return base


def test_promote_writes_labels_policy_and_history(tmp_path, capsys):
    """A TF Serving text config the server reads back: labels, `specific` policy with the replaced
    stable version kept loaded, canary cleared once it becomes stable; rollback undoes in order."""
    base = _versions(tmp_path, 1, 2, 3)
    config = str(tmp_path / "models.config")
    assert cli.main(["models", "promote", "1", "--config", config, "--model", "fmnist",
                     "--base-path", str(base)]) == 0
    assert cli.main(["models", "promote", "2", "--label", "canary", "--config", config]) == 0
    [m] = read_model_config_file(config)
    assert dict(m.labels) == {"stable": 1, "canary": 2} and m.policy.specific == (1, 2)
    assert cli.main(["models", "promote", "2", "--config", config]) == 0
    [m] = read_model_config_file(config)
    assert dict(m.labels) == {"stable": 2} and m.policy.specific == (1, 2)
    assert cli.main(["models", "promote", "3", "--config", config]) == 0
    [m] = read_model_config_file(config)
    assert dict(m.labels) == {"stable": 3} and m.policy.specific == (2, 3)
    assert cli.main(["models", "rollback", "--config", config]) == 0
    assert dict(read_model_config_file(config)[0].labels) == {"stable": 2}
    assert cli.main(["models", "rollback", "--config", config]) == 0
    assert dict(read_model_config_file(config)[0].labels) == {"stable": 1}
    capsys.readouterr()
    assert cli.main(["models", "rollback", "--config", config]) == 2
    assert "no earlier version" in capsys.readouterr().err
    assert cli.main(["models", "promote", "7", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "no version 7 under" in err and str(base) in err
