"""ExampleGen's splits written without TFX's Reshuffle when the Beam runner is DirectRunner.

Why: TFX's `WriteSplit` puts `beam.Reshuffle()` (a GroupByKey on random keys) between the
examples and `WriteToTFRecord`. On a distributed runner that rebalances the work; on DirectRunner
it holds every serialized example of the split in memory at once, so ExampleGen's memory grows
with the data however the CSV is read (measured in BENCHMARKS.md, "Scale"), and it does not even
reorder them (DirectRunner's GroupByKey hands the groups back in arrival order, and every random
key is its own group; tests/test_csv_chunks.py compares both writes file for file). On
DirectRunner the splits are therefore written straight from the parser: the same files
(`Split-<name>/data_tfrecord-*.gz`, gzipped TFRecord), the same records in the same order, in
memory that does not grow with the rows. Any other runner gets TFX's `WriteSplit` unchanged.
"""
from __future__ import annotations

import os
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from tfx.components.example_gen import write_split

DIRECT_RUNNERS = {None, "DirectRunner", "direct", "SwitchingDirectRunner", "BundleBasedDirectRunner"}


def is_direct_runner(beam_pipeline_args: list[str]) -> bool:
    """Whether these Beam arguments run the pipeline on Beam's (Python) DirectRunner."""
    runner = PipelineOptions(list(beam_pipeline_args or [])).view_as(StandardOptions).runner
    if runner is not None and not isinstance(runner, str):
        runner = type(runner).__name__
    return runner in DIRECT_RUNNERS


@beam.ptransform_fn
def WriteSplitWithoutReshuffle(examples: beam.pvalue.PCollection, output_split_path: str) -> Any:  # noqa: N802
    """Serialized examples to gzipped TFRecords under the names TFX's WriteSplit uses."""
    return examples | beam.io.WriteToTFRecord(
        os.path.join(output_split_path, write_split.DEFAULT_TF_RECORD_FILE_NAME), file_name_suffix=".gz")
