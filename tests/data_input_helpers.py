"""Small CSVs the data-input tests write, and FastCsvExampleGen's executor run directly on them.

The executor is run the way TFX's own executor tests do (a context with a temporary directory,
an Examples artifact, the exec properties ExampleGen's driver would pass) -- the real executor
and Beam pipeline, without paying for a whole pipeline run per case.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import tensorflow as tf

from schema.contract import CSV_COLUMNS

HEADER = ",".join(CSV_COLUMNS)


def make_row(label: int, seed: int) -> list[int]:
    """A row whose image is distinct for every seed (no accidental duplicates between files)."""
    return [label] + [(seed * 31 + i * 7 + (seed * i) % 13) % 256 for i in range(784)]


def csv_text(rows: list[list], header: str = HEADER, end: str = "\n") -> str:
    return header + end + "".join(",".join(str(v) for v in r) + end for r in rows)


def permuted_csv(rows: list[list], columns: list[str], end: str = "\n") -> str:
    """`rows` (in CSV_COLUMNS order) as a CSV whose columns come in the order `columns` names them."""
    at = [CSV_COLUMNS.index(c) for c in columns]
    return csv_text([[r[i] for i in at] for r in rows], ",".join(columns), end)


def write(path: Path, data: str | bytes, gz: bool = False) -> str:
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return str(path)


def features(serialized: bytes) -> dict[str, list[int]]:
    ex = tf.train.Example.FromString(serialized)
    return {k: list(f.int64_list.value) for k, f in ex.features.feature.items()}


def run_example_gen(tmp: Path, data_root: str | Path, train_pattern: str = "*_train.csv*",
                    test_pattern: str = "*_test.csv*", file_counts: dict[str, int] | None = None,
                    max_duplicate_share: float = 0.01) -> tuple[dict[str, list[bytes]], dict[str, Any]]:
    """Runs the executor; returns ({split: serialized examples}, the data_input report)."""
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts, standard_component_specs as specs
    from tfx.utils import proto_utils

    from components.data_input import csv_example_gen

    examples = standard_artifacts.Examples()
    examples.uri = str(tmp / "examples")
    os.makedirs(examples.uri, exist_ok=True)
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="train", pattern=train_pattern),
        example_gen_pb2.Input.Split(name="test", pattern=test_pattern)])
    props = {
        specs.INPUT_BASE_KEY: str(data_root),
        specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(input_config),
        specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(example_gen_pb2.Output()),
        specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        specs.CUSTOM_CONFIG_KEY: proto_utils.proto_to_json(csv_example_gen.input_options(
            file_counts or {"train": 1, "test": 1}, max_duplicate_share)),
    }
    context = BaseBeamExecutor.Context(
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
        tmp_dir=str(tmp / "executor-tmp"), unique_id="1")
    csv_example_gen.Executor(context).Do({}, {specs.EXAMPLES_KEY: [examples]}, props)
    out = {}
    for split in ("train", "test"):
        files = tf.io.gfile.glob(os.path.join(examples.uri, f"Split-{split}", "*"))
        out[split] = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    with open(os.path.join(examples.uri, csv_example_gen.DATA_REPORT_FILE)) as f:
        report = json.load(f)
    assert json.loads(examples.get_string_custom_property(csv_example_gen.DATA_REPORT_PROPERTY)) == report
    return out, report
