"""The default source: Kaggle-layout CSVs (plain or gzipped) read by FastCsvExampleGen.

What the reader accepts and refuses: README "Data", components/data_input/csv_example_gen.py and
components/data_input/csv_table.py. Split files are chosen by components/data_input/split_files.py (backups ignored,
exact file counts, no file in two splits), here before TensorFlow starts and again in the executor.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig

# ValidationGate names the CSV cells outside the schema's domains (file, line, column, value).
ROW_LOOKUP = "components.data_input.csv_example_gen.offending_cells"


def example_gen(*, input_base: Any, input_config: Any, output_config: Any, config: PipelineConfig) -> Any:
    from components.custom_components import FastCsvExampleGen
    from components.data_input.csv_example_gen import input_options

    counts = config.data_input_options()["file_counts"]
    splits = [split.name for split in input_config.splits]
    return FastCsvExampleGen(
        input_base=input_base, input_config=input_config, output_config=output_config,
        # The holdout's one split expects one file, like the test split it mirrors.
        custom_config=input_options(file_counts={split: counts.get(split, 1) for split in splits},
                                    max_duplicate_share=config.max_duplicate_share))


def check_files(root: str, patterns: dict[str, str], config: PipelineConfig) -> None:
    from components.data_input.split_files import select_splits

    select_splits(root, patterns, config.data_input_options()["file_counts"])
