"""A CsvExampleGen executor for the Kaggle pixel CSVs: fast, gzip-aware, exact, one image feature.

Why not the stock CsvExampleGen: it parses every cell in Python (~150 rows/s on 785 columns here,
6.7 min for the 60,000-row training CSV), cannot read a gzipped file's header, and writes 785
scalar features, which makes every later stage (statistics, Transform, Evaluator) slow too.

This executor keeps the component, its `Examples` artifact and its split handling, but:
* chooses each split's files so splits cannot mix (components/data_input/split_files.py): anchored globs,
  backups and hidden files ignored, exactly the expected number of files per split, no file in two
  splits -- checked before any data is read;
* parses each file exactly, in chunks of rows (components/data_input/csv_table.py: memory does not grow with
  the file), and serializes each chunk in batches with tfx_bsl's C++ encoder; a file that is not
  the table stops the run here, before any training, naming the file, line, column and cell
  (every refused file of the run, with its count of refused rows);
* on DirectRunner writes the splits without TFX WriteSplit's Reshuffle, which holds every example
  in memory there (components/data_input/split_writer.py); other runners get WriteSplit unchanged;
* writes two features per row: `label` (int64) and `pixels` (784 int64 values, row-major), so the
  schema can still say "every pixel an integer in [0, 255], exactly 784 of them";
* hashes every image and counts images of the other splits that are also in the first (training)
  split; above `max_duplicate_share` of a split the run stops, since such a test split measures
  memorised images;
* records, per split, the files read and the rows taken, skipped (blank lines) and refused, in
  `data_input.json` inside the Examples artifact and as its `data_input` custom property (read by
  the run summary and the run report).
Value checks (a pixel of 300, a label of 11) are left to the schema and ExampleValidator, as in any
TFX pipeline.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from typing import Any, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
from google.protobuf import any_pb2, json_format, struct_pb2
from tfx.components.example_gen import utils as example_gen_utils, write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs as specs
from tfx.utils import proto_utils
from tfx_bsl.coders import example_coder

from components.data_input import split_files, split_writer
from components.data_input.csv_table import CsvFormatError, CsvReader, read_table, unreadable
from components.errors import FmnistError
from schema.contract import (
    CSV_COLUMNS,
    DATA_REPORT_FILE,
    DATA_REPORT_PROPERTY,
    LABEL_KEY,
    NUM_PIXELS,
    RAW_PIXELS_KEY,
)

log = logging.getLogger(__name__)

BATCH_ROWS = 4096
_FILES_KEY = "_fmnist_split_files"
_REPORTS_KEY = "_fmnist_file_reports"
_REPORTS_DIR = ".file_reports"   # inside the examples artifact while the executor runs
_EXAMPLES_SHOWN = 3
MAX_CELLS_SHOWN = 5     # ValidationGate's lookup: offending cells shown per run


class DuplicateImagesError(FmnistError, ValueError):
    """Too many images of a split are also in the training split."""


def input_options(file_counts: dict[str, int], max_duplicate_share: float) -> example_gen_pb2.CustomConfig:
    """ExampleGen's custom_config: how many files each split must match, the duplicate limit."""
    values = struct_pb2.Struct()
    values.update({"file_counts": dict(file_counts), "max_duplicate_share": float(max_duplicate_share)})
    packed = any_pb2.Any()
    packed.Pack(values)
    return example_gen_pb2.CustomConfig(custom_config=packed)


def read_options(custom_config: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {"file_counts": {}, "max_duplicate_share": split_files.DEFAULT_MAX_DUPLICATE_SHARE}
    if custom_config:
        config = example_gen_pb2.CustomConfig()
        proto_utils.json_to_proto(custom_config, config)
        values = struct_pb2.Struct()
        if config.custom_config.Unpack(values):
            options.update(json_format.MessageToDict(values))
    options["file_counts"] = {k: int(v) for k, v in options["file_counts"].items()}
    return options


def to_record_batch(table: np.ndarray) -> pa.RecordBatch:
    """[n, 785] (label, pixels...) -> Arrow columns `label` list<int64>[1], `pixels` list<int64>[784]."""
    n = table.shape[0]
    labels = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)),
                                      pa.array(np.ascontiguousarray(table[:, 0])))
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * NUM_PIXELS)
    pixels = pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(table[:, 1:]).reshape(-1)))
    return pa.RecordBatch.from_arrays([labels, pixels], [LABEL_KEY, RAW_PIXELS_KEY])


def encode_examples(table: np.ndarray) -> Iterator[bytes]:
    """Serialized tf.Examples of a [n, 785] table, in row order."""
    encoder = example_coder.RecordBatchToExamplesEncoder()
    for start in range(0, len(table), BATCH_ROWS):
        yield from encoder.encode(to_record_batch(table[start:start + BATCH_ROWS]))


def csv_file_to_examples(path: str) -> Iterator[bytes]:
    """Serialized tf.Examples for one CSV file, in file order, chunk by chunk (raises
    CsvFormatError at the end if the file is refused)."""
    for chunk in CsvReader(path):
        yield from encode_examples(chunk.values)


def image_hashes(values: np.ndarray) -> np.ndarray:
    """A 64-bit BLAKE2b digest of each row's 784 pixels (the label is not part of the image).

    In-range pixels are hashed as bytes (784 per image), so the same image hashes the same in
    every file; a row with a pixel outside 0..255 is hashed as int64 values instead.
    """
    pixels = values[:, 1:]
    small = pixels.astype(np.uint8, order="C")      # rows contiguous whatever `values`' layout
    in_range = (np.ones(len(pixels), bool) if len(pixels) == 0 or (pixels.min() >= 0 and pixels.max() <= 255)
                else ((pixels >= 0) & (pixels <= 255)).all(axis=1))
    digests = [hashlib.blake2b(small[i] if ok else np.ascontiguousarray(pixels[i]), digest_size=8).digest()
               for i, ok in enumerate(in_range)]
    return np.frombuffer(b"".join(digests), dtype=np.uint64)


class _ParseFile(beam.DoFn):
    """(split, path) -> serialized examples; a report of the file on the 'report' output."""

    def process(self, item: tuple[str, str]) -> Iterator[Any]:
        split, path = item
        reader = CsvReader(path)
        hashes, labels, lines = [], [], []
        error: CsvFormatError | None = None
        try:
            for chunk in reader:     # examples leave chunk by chunk: memory does not grow with the file
                yield from encode_examples(chunk.values)
                hashes.append(image_hashes(chunk.values).tobytes())
                labels.append(np.ascontiguousarray(chunk.values[:, 0]).tobytes())
                lines.append(chunk.line_numbers.tobytes())
        except CsvFormatError as e:
            error = e
        except Exception as e:  # encoding or hashing a chunk: still "could not read FILE"
            error = unreadable(path, e)
        if error is not None:        # the run stops in Do; examples already written are never published
            yield beam.pvalue.TaggedOutput("report", {"split": split, "file": path, "error": str(error),
                                                      "rows_refused": error.rows_refused})
            return
        log.info("%s: %d rows, %d blank lines skipped, %s line ends", path, reader.rows, reader.blank_lines,
                 reader.line_ends or "no")
        yield beam.pvalue.TaggedOutput("report", {
            "split": split, "file": path, "rows": int(reader.rows), "blank_lines": reader.blank_lines,
            "rows_refused": 0, "byte_order_mark": reader.byte_order_mark, "line_ends": reader.line_ends,
            "hashes": b"".join(hashes), "labels": b"".join(labels), "lines": b"".join(lines)})


def _write_reports(reports: list[dict[str, Any]], path: str) -> None:
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "wb") as f:
        pickle.dump(reports, f)


def duplicates(by_split: dict[str, list[dict[str, Any]]], max_share: float) -> dict[str, Any]:
    """Images of each later split also present in the first (training) split, and repeats within."""
    def column(reports: list[dict[str, Any]], key: str, dtype: Any) -> np.ndarray:
        parts = [np.frombuffer(r[key], dtype=dtype) for r in reports]
        return np.concatenate(parts) if parts else np.empty(0, dtype)

    def origin(reports: list[dict[str, Any]], row: int) -> str:
        for r in reports:
            n = len(r["hashes"]) // 8
            if row < n:
                return f"{os.path.basename(r['file'])} line {np.frombuffer(r['lines'], np.int64)[row]}"
            row -= n
        return "?"

    splits = list(by_split)
    first = splits[0]
    base = column(by_split[first], "hashes", np.uint64)
    base_labels = column(by_split[first], "labels", np.int64)
    out: dict[str, Any] = {"reference_split": first, "max_share": max_share, "splits": {}}
    for split in splits:
        hashes = column(by_split[split], "hashes", np.uint64)
        entry = {"repeated_within": int(len(hashes) - len(np.unique(hashes)))}
        if split != first:
            found = np.isin(hashes, base)
            rows = np.flatnonzero(found)
            first_row = {}
            for i in np.flatnonzero(np.isin(base, hashes[rows])):
                first_row.setdefault(int(base[i]), i)
            labels = column(by_split[split], "labels", np.int64)
            conflicting = sum(1 for r in rows if base_labels[first_row[int(hashes[r])]] != labels[r])
            entry.update({
                "also_in_reference": int(len(rows)),
                "share": float(len(rows) / len(hashes)) if len(hashes) else 0.0,
                "different_label": int(conflicting),
                "examples": [f"{origin(by_split[split], r)} = {origin(by_split[first], first_row[int(hashes[r])])}"
                             for r in rows[:_EXAMPLES_SHOWN]]})
        out["splits"][split] = entry
    return out


def build_report(selection: dict[str, split_files.SplitFiles], reports: list[dict[str, Any]],
                 max_share: float) -> dict[str, Any]:
    """The data_input.json record: per split its files and rows taken, skipped and refused."""
    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in selection}
    for r in sorted(reports, key=lambda r: r["file"]):
        by_split[r["split"]].append(r)
    splits: dict[str, Any] = {}
    for split, sel in selection.items():
        files = [{k: v for k, v in r.items() if k not in ("hashes", "labels", "lines", "split")}
                 for r in by_split[split]]
        splits[split] = {
            "pattern": sel.pattern, "files": files,
            "ignored": [{"file": n, "why": why} for n, why in sel.ignored],
            "rows": sum(f.get("rows", 0) for f in files),
            "blank_lines": sum(f.get("blank_lines", 0) for f in files),
            "rows_refused": sum(f.get("rows_refused", 0) for f in files)}
    report: dict[str, Any] = {"splits": splits}
    if not any("error" in r for r in reports):
        report["duplicates"] = duplicates(by_split, max_share)
    return report


def describe(report: dict[str, Any]) -> list[str]:
    """Human-readable lines of a data_input report (run summary, logs)."""
    lines = []
    for split, s in report["splits"].items():
        names = ", ".join(os.path.basename(f["file"]) + (" (refused)" if "error" in f else "")
                          for f in s["files"])
        lines.append(f"{split}: {names} -- {s['rows']:,} rows taken, {s['blank_lines']:,} blank lines "
                     f"skipped, {s['rows_refused']:,} rows refused")
        if s["ignored"]:
            lines.append(f"  {split}: ignored " + ", ".join(f"{i['file']} ({i['why']})" for i in s["ignored"]))
    dup = report.get("duplicates")
    if dup:
        for split, d in dup["splits"].items():
            if "also_in_reference" in d:
                lines.append(f"{split}: {d['also_in_reference']:,} images also in '{dup['reference_split']}' "
                             f"({d['share']:.2%}, limit {dup['max_share']:.2%}; {d['different_label']} "
                             f"with a different label)")
    return lines


def offending_cells(input_base: str, split: str, pattern: str,
                    domains: dict[str, tuple[int, int]]) -> list[str]:
    """ValidationGate's row lookup for CSVs (pipeline/sources/csv_files.py): the first cells of the
    split's CSVs that fall outside their feature's domain, and per file how many rows have such a
    cell (the rows the schema refuses)."""
    # Column c of the table feeds feature `label` (c == 0) or `pixels` (c >= 1).
    lo = np.array([domains.get(LABEL_KEY, (-2**62, 2**62))[0]]
                  + [domains.get(RAW_PIXELS_KEY, (-2**62, 2**62))[0]] * (len(CSV_COLUMNS) - 1))
    hi = np.array([domains.get(LABEL_KEY, (-2**62, 2**62))[1]]
                  + [domains.get(RAW_PIXELS_KEY, (-2**62, 2**62))[1]] * (len(CSV_COLUMNS) - 1))
    found: list[str] = []
    for path in split_files.match_split(input_base, split, pattern).files:
        table = read_table(path)
        outside = (table.values < lo) | (table.values > hi)
        rows, cols = np.nonzero(outside)
        bad_rows = int(outside.any(axis=1).sum())
        if bad_rows:
            found.append(f"{path}: {bad_rows} of {len(table.values)} rows refused by the schema")
        for r, c in zip(rows[:MAX_CELLS_SHOWN], cols[:MAX_CELLS_SHOWN]):
            found.append(f"{path} line {table.line_numbers[r]} column '{CSV_COLUMNS[c]}' = "
                         f"{table.values[r, c]} (allowed {lo[c]}..{hi[c]})")
        if len(rows) > MAX_CELLS_SHOWN:
            found.append(f"... {len(rows) - MAX_CELLS_SHOWN} more such cells in {path}")
        if len(found) >= MAX_CELLS_SHOWN:
            break
    return found


class Executor(BaseExampleGenExecutor):
    """FileBasedExampleGen executor for the Kaggle Fashion-MNIST CSVs (plain or gzipped)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        raise NotImplementedError("GenerateExamplesByBeam reads the files chosen in Do")

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                               exec_properties: dict[str, Any]) -> dict[str, beam.pvalue.PCollection]:
        result, reports = {}, []
        for split, files in exec_properties[_FILES_KEY].items():
            parsed = (pipeline
                      | f"ListFiles[{split}]" >> beam.Create([(split, f) for f in files])
                      | f"ParseCsv[{split}]" >> beam.ParDo(_ParseFile()).with_outputs("report", main="examples"))
            result[split] = parsed.examples
            reports.append(parsed.report)
        _ = (reports
             | "FlattenReports" >> beam.Flatten()
             | "CollectReports" >> beam.combiners.ToList()
             | "WriteReports" >> beam.Map(_write_reports, exec_properties[_REPORTS_KEY]))
        return result

    def _generate_without_reshuffle(self, output_dict: dict[str, list[Any]],
                                    exec_properties: dict[str, Any]) -> None:
        """BaseExampleGenExecutor.Do on DirectRunner, minus WriteSplit's Reshuffle, which holds
        every example in memory there (components/data_input/split_writer.py): same files, same order."""
        input_config, output_config = example_gen_pb2.Input(), example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[specs.INPUT_CONFIG_KEY], input_config)
        proto_utils.json_to_proto(exec_properties[specs.OUTPUT_CONFIG_KEY], output_config)
        artifacts = output_dict[specs.EXAMPLES_KEY]
        artifact_utils.get_single_instance(artifacts).split_names = artifact_utils.encode_split_names(
            example_gen_utils.generate_output_split_names(input_config, output_config))
        with self._make_beam_pipeline() as pipeline:
            for split, examples in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                _ = examples | f"WriteSplit[{split}]" >> split_writer.WriteSplitWithoutReshuffle(
                    artifact_utils.get_split_uri(artifacts, split))
        payload_format = exec_properties.get(specs.OUTPUT_DATA_FORMAT_KEY)
        file_format = exec_properties.get(specs.OUTPUT_FILE_FORMAT_KEY)
        for artifact in artifacts:
            if payload_format:
                examples_utils.set_payload_format(artifact, payload_format)
            if file_format:
                examples_utils.set_file_format(artifact, write_split.to_file_format_str(file_format))

    def Do(self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]],
           exec_properties: dict[str, Any]) -> None:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[specs.INPUT_CONFIG_KEY], input_config)
        options = read_options(exec_properties.get(specs.CUSTOM_CONFIG_KEY))
        selection = split_files.select_splits(
            exec_properties[specs.INPUT_BASE_KEY], {s.name: s.pattern for s in input_config.splits},
            options["file_counts"])
        props = dict(exec_properties)
        props[_FILES_KEY] = {split: sel.files for split, sel in selection.items()}
        examples = artifact_utils.get_single_instance(output_dict[specs.EXAMPLES_KEY])
        # The file reports are written by a Beam worker, so they go where the workers write the
        # examples: the executor's temporary directory is beside Kubeflow's output metadata file,
        # a path in the step's pod (/gcs/..., /minio/...) that a Flink or Dataflow worker cannot
        # reach. Removed once read; a failed run publishes no artifact.
        reports_dir = os.path.join(examples.uri, _REPORTS_DIR)
        props[_REPORTS_KEY] = os.path.join(reports_dir, "file_reports.pkl")
        if split_writer.is_direct_runner(self._beam_pipeline_args):
            self._generate_without_reshuffle(output_dict, props)
        else:
            super().Do(input_dict, output_dict, props)

        with fileio.open(props[_REPORTS_KEY], "rb") as f:
            reports = pickle.load(f)
        fileio.rmtree(reports_dir)
        max_share = float(options["max_duplicate_share"])
        report = build_report(selection, reports, max_share)
        text = json.dumps(report, indent=1)
        with fileio.open(os.path.join(examples.uri, DATA_REPORT_FILE), "w") as f:
            f.write(text)
        examples.set_string_custom_property(DATA_REPORT_PROPERTY, json.dumps(report))
        for line in describe(report):
            log.info("data input: %s", line)

        errors = [r["error"] for r in sorted(reports, key=lambda r: r["file"]) if "error" in r]
        if errors:
            error = CsvFormatError("\n".join(errors), sum(r["rows_refused"] for r in reports))
            error.data_input = report   # for the run summary: a failed run publishes no artifact
            raise error
        too_many = [(split, d) for split, d in report["duplicates"]["splits"].items()
                    if d.get("share", 0.0) > max_share]
        if too_many:
            ref = report["duplicates"]["reference_split"]
            error = DuplicateImagesError("; ".join(
                f"{d['also_in_reference']:,} of {report['splits'][split]['rows']:,} images of split "
                f"'{split}' ({d['share']:.2%}) are also in split '{ref}', above max_duplicate_share = "
                f"{max_share:.2%} (e.g. {'; '.join(d['examples'])}); a split that repeats the training "
                "images cannot measure the model -- check that the files are the intended ones"
                for split, d in too_many))
            error.data_input = report
            raise error
