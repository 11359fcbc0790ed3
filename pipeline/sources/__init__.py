"""Where the pipeline's examples come from: the one place the data source is chosen.

A source is one module in this package (`csv_files`, `tfrecord_files`) providing:

* `example_gen(input_base, input_config, output_config, config)`: the ExampleGen component that
  turns the files matched by `input_config`'s split patterns into an Examples artifact of
  tf.Examples with the contract's features (`label`, `pixels`);
* `check_files(root, patterns, config)`: the check `fmnist run` makes before TensorFlow starts
  (raises DataSelectionError), so a wrong path fails in a second, not after a minute;
* `ROW_LOOKUP`: the dotted name of a function ValidationGate calls to show the offending rows of a
  split in the source's own terms (the CSV's file, line and column), or "" for none.

Everything else -- split names and patterns, the span placeholder, the holdout, component ids --
is decided here once for every source, so a new source is its module plus one entry in SOURCES
(config field `data_format`). The component id is the contract's EXAMPLE_GEN whatever the source,
so the summary, the Kubeflow compiler and the tests find it by that one name.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from schema import contract
from schema.contract import HOLDOUT_SPLIT, TEST_SPLIT, TRAIN_SPLIT

if TYPE_CHECKING:  # pipeline.config imports this module for SOURCES
    from pipeline.config import PipelineConfig

# data_format -> the module implementing it.
SOURCES: dict[str, str] = {
    "csv": "pipeline.sources.csv_files",            # Kaggle-layout CSVs (the default), components/data_input/
    "tfrecord": "pipeline.sources.tfrecord_files",  # TFRecord files of tf.Examples, TFX's ImportExampleGen
}


def data_source(config: PipelineConfig) -> ModuleType:
    """The module of `config.data_format` (pipeline/config.py refuses unknown names)."""
    return importlib.import_module(SOURCES[config.data_format])


def split_patterns(config: PipelineConfig) -> dict[str, str]:
    """{split: pattern under data_root}: the training split first, as ValidationGate expects. In span
    mode only the newest span directory is read (TFX's driver resolves `{SPAN}`)."""
    from components.spans import SPAN_DIR_PATTERN

    span_dir = f"{SPAN_DIR_PATTERN}/" if config.spans else ""
    return {TRAIN_SPLIT: span_dir + config.train_pattern, TEST_SPLIT: span_dir + config.test_pattern}


def example_gen(config: PipelineConfig) -> Any:
    """The pipeline's ExampleGen for `config`: train and test split from `config.data_root`."""
    from tfx import v1 as tfx

    input_config = tfx.proto.Input(splits=[tfx.proto.Input.Split(name=split, pattern=pattern)
                                           for split, pattern in split_patterns(config).items()])
    return data_source(config).example_gen(input_base=config.data_root, input_config=input_config,
                                           output_config=None, config=config).with_id(contract.EXAMPLE_GEN)


def holdout_example_gen(config: PipelineConfig) -> Any:
    """Span mode: the fixed holdout (`config.holdout_dir`, test pattern) as one whole split."""
    from tfx import v1 as tfx

    input_config = tfx.proto.Input(splits=[tfx.proto.Input.Split(name=HOLDOUT_SPLIT, pattern=config.test_pattern)])
    # One input split would be hash-partitioned into train/eval by default; keep it whole.
    output_config = tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
        tfx.proto.SplitConfig.Split(name=HOLDOUT_SPLIT, hash_buckets=1)]))
    return data_source(config).example_gen(input_base=config.holdout_dir, input_config=input_config,
                                           output_config=output_config,
                                           config=config).with_id(contract.HOLDOUT_EXAMPLE_GEN)


def row_lookup(config: PipelineConfig) -> str:
    """What ValidationGate calls to name offending rows in the source's files ("" = none)."""
    return data_source(config).ROW_LOOKUP


def newest_span_dir(data_root: str) -> str:
    """data_root/span-<highest N> (span mode), or a DataSelectionError saying what the layout must be."""
    from components.data_input.split_files import DataSelectionError
    from pipeline.watch import span_dirs

    spans = span_dirs(data_root)
    if not spans:
        raise DataSelectionError(
            f"spans=true but {data_root} has no span-<N>/ directory; the layout is DATA/span-1/<train file> + "
            "<test file>, DATA/span-2/..., DATA/holdout/<test file>")
    return spans[max(spans)]


def check_files(config: PipelineConfig) -> None:
    """Before TensorFlow starts: the files ExampleGen will read are there (local data_root only;
    a URI is checked by ExampleGen itself). Raises components.data_input.split_files.DataSelectionError."""
    if "://" in config.data_root:
        return
    root = newest_span_dir(config.data_root) if config.spans else config.data_root
    data_source(config).check_files(root, {TRAIN_SPLIT: config.train_pattern, TEST_SPLIT: config.test_pattern},
                                    config)
