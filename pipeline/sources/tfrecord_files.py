"""TFRecord files of tf.Examples already in the Examples layout (`label`: int64, `pixels`: 784
int64 values, row-major, 0..255; schema/schema.pbtxt), read by TFX's own ImportExampleGen.

E.g. another team's export, or a previous pipeline's ExampleGen output. The records are copied as
they are; the schema, ExampleValidator and ValidationGate check them like CSV rows (the gate cannot
point at a line in a binary file, so it lists the anomalies only). Set with
`--set data_format=tfrecord --set train_pattern=... --set test_pattern=...`.
"""
from __future__ import annotations

import fnmatch
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig

ROW_LOOKUP = ""


def example_gen(*, input_base: Any, input_config: Any, output_config: Any, config: PipelineConfig) -> Any:
    from tfx import v1 as tfx

    return tfx.components.ImportExampleGen(input_base=input_base, input_config=input_config,
                                           output_config=output_config)


def check_files(root: str, patterns: dict[str, str], config: PipelineConfig) -> None:
    """Every split's pattern matches at least one file (ImportExampleGen reads every match)."""
    from components.data_input.split_files import DataSelectionError, check_data_root

    check_data_root(root)
    names = os.listdir(root)
    missing = [f"split '{split}': no file in {root} matches {pattern!r}"
               for split, pattern in patterns.items() if not fnmatch.filter(names, pattern)]
    if missing:
        raise DataSelectionError("split files:\n  " + "\n  ".join(missing))
