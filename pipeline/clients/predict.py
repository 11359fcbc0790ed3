"""`fmnist predict`: photos, folders, globs and Kaggle CSV rows classified by a model server.

Inputs are expanded first (folders recursively, to files whose extension an image format or
.csv/.csv.gz claims; globs as Python's glob, for shells that do not expand them), then streamed:
one chunk of at most `--batch-size` inputs is read, converted, sent and written before the next
is read, so memory stays bounded however many files or CSV rows there are. A chunk over the
server's size limits is split and the smaller size kept. A file that cannot be read is reported
in one line and in the output, the others go on; the exit status is 1 when any input failed.
Not reaching the server, or a server without the model, ends the run in one line with status 2.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from components.data_input.csv_table import CsvReader, CsvRow
from components.errors import FmnistError
from pipeline.clients.photo_input import DEFAULT_MAX_PIXELS, PhotoError, is_image_name, load_photo
from schema.contract import CLASS_NAMES, IMAGES_UINT8_SIGNATURE, PIXEL_KEYS

SIGNATURE = IMAGES_UINT8_SIGNATURE
CSV_SUFFIXES = (".csv", ".csv.gz")


class UsageError(FmnistError):
    """Bad arguments or an unusable server: one line, exit status 2."""


@dataclasses.dataclass
class Item:
    """One input to answer: a photo or a CSV row, or why it could not be read."""
    name: str
    pixels: np.ndarray | None = None
    true_class: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    answer: dict | None = None


# ---------------------------------------------------------------------------------------------
# inputs


def is_csv(path: Path) -> bool:
    return path.name.lower().endswith(CSV_SUFFIXES)


def _folder_files(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files)
                  if not f.startswith(".") and (is_image_name(f) or f.lower().endswith(CSV_SUFFIXES))]
    return found


def expand(inputs: list[str]) -> list[Path | Item]:
    """Paths to read, in the order given; an Item (with its error) for what names nothing."""
    out: list[Path | Item] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)

    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = _folder_files(path)
            if not files:
                out.append(Item(text, error="folder holds no image or CSV files"))
            for f in files:
                add(f)
        elif path.exists() or os.path.lexists(path):
            add(path)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                out.append(Item(text, error="no file matches this pattern"))
            for match in matches:
                m = Path(match)
                for f in (_folder_files(m) if m.is_dir() else [m]):
                    add(f)
        else:
            out.append(Item(text, error="no such file or folder"))
    return out


def csv_items(path: Path, limit: int | None) -> Iterator[Item]:
    """Kaggle-layout rows (`label` optional, `pixel1`..`pixel784`) as Items, streamed.

    The project's one CSV reader in its lenient mode (components/data_input/csv_table.py, CsvReader.lenient_rows):
    a bad row is an Item with its error and the rows after it are still answered; pixel values
    outside 0..255, which that reader leaves to the schema, are refused here.
    """
    try:
        for row in CsvReader(str(path)).lenient_rows(limit):
            yield _csv_item(path, row)
    except OSError as e:
        yield Item(str(path), error=f"unreadable CSV ({' '.join(str(e).split())[:160]})")


def _csv_item(path: Path, row: CsvRow) -> Item:
    if row.number is None:
        return Item(str(path), error=row.error)
    name = f"{path}:row{row.number}"
    if row.error:
        return Item(name, error=row.error)
    values = row.pixels
    if values.min() < 0 or values.max() > 255:
        bad = PIXEL_KEYS[int(np.argmax((values < 0) | (values > 255)))]
        return Item(name, error=f"{bad} is outside 0..255")
    truth = row.label
    if truth is not None and truth.isdigit() and int(truth) < len(CLASS_NAMES):
        truth = CLASS_NAMES[int(truth)]
    return Item(name, pixels=values.astype(np.uint8).reshape(28, 28), true_class=truth)


def photo_item(path: Path, max_pixels: int) -> Item:
    try:
        converted = load_photo(path, max_pixels)
    except PhotoError as e:
        return Item(str(path), error=str(e))
    return Item(str(path), pixels=converted.pixels, warnings=converted.warnings)


def items(sources: list[Path | Item], limit: int | None, max_pixels: int) -> Iterator[Item]:
    for source in sources:
        if isinstance(source, Item):
            yield source
        elif is_csv(source):
            yield from csv_items(source, limit)
        else:
            yield photo_item(source, max_pixels)


# ---------------------------------------------------------------------------------------------
# output


class Writer:
    """text (one line per input), csv (a header, one row per input) or json (one array), streamed."""

    CSV_HEADER = ["file", "class", "probability", "top2_class", "top2_probability", "top3_class",
                  "top3_probability", "true_class", "model_version", "warning", "error"]

    def __init__(self, fmt: str, stream: IO[str]) -> None:
        self.fmt, self.stream, self.count = fmt, stream, 0
        if fmt == "csv":
            self.csv = csv.writer(stream, lineterminator="\n")
            self.csv.writerow(self.CSV_HEADER)
        elif fmt == "json":
            stream.write("[")

    def write(self, item: Item) -> None:
        a = item.answer
        if self.fmt == "json":
            record = {"file": item.name}
            if a:
                record.update(a)
            if item.true_class is not None:
                record["true_class"] = item.true_class
            if item.warnings:
                record["warnings"] = item.warnings
            if item.error:
                record["error"] = item.error
            self.stream.write(("," if self.count else "") + "\n " + json.dumps(record))
        elif self.fmt == "csv":
            top = (a or {}).get("top3", [])
            cells = [item.name, a["class"] if a else "", f"{a['probability']:.4f}" if a else ""]
            for k in (1, 2):
                cells += [top[k]["class"], f"{top[k]['probability']:.4f}"] if len(top) > k else ["", ""]
            cells += [item.true_class or "", a["model_version"] if a else "", "; ".join(item.warnings),
                      item.error or ""]
            self.csv.writerow(cells)
        elif a:
            top = ", ".join(f"{t['class']} {t['probability']:.2f}" for t in a["top3"])
            truth = f"  (true: {item.true_class})" if item.true_class else ""
            self.stream.write(f"{item.name}: {a['class']}{truth}   [{top}]\n")
        self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.count else "]\n")
        self.stream.flush()


class Progress:
    """A line on stderr at most every EVERY seconds once a run has taken longer than that."""

    EVERY = 5.0

    def __init__(self, total_files: int, enabled: bool) -> None:
        self.total, self.enabled, self.every = total_files, enabled, self.EVERY
        self.start = self.last = time.monotonic()
        self.done = self.failed = 0
        self.shown = False
        self.printed: tuple[int, int] | None = None
        self.tty = sys.stderr.isatty()

    def update(self, done: int, failed: int, final: bool = False) -> None:
        self.done, self.failed = done, failed
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < self.every) or (final and not self.shown):
            return
        if final and self.printed == (done, failed):
            return
        self.printed = (done, failed)
        self.last, self.shown = now, True
        rate = done / max(now - self.start, 1e-6)
        text = f"fmnist predict: {done} inputs answered ({failed} failed) from {self.total} files, {rate:.0f}/s"
        sys.stderr.write(("\r" + text + ("\n" if final else "")) if self.tty else text + "\n")
        sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# the run


def answer(prediction) -> dict:
    top = prediction.top(3, CLASS_NAMES)
    return {"class": prediction.class_name, "class_id": prediction.class_id,
            "probability": round(float(prediction.probabilities[prediction.class_id]), 4),
            "top3": [{"class": c, "probability": round(p, 4)} for c, p in top],
            "model_version": prediction.model_version}


def make_client(args: argparse.Namespace):
    from serving.client import RestClient, ServingClient

    server = args.server
    rest = args.rest or server.startswith(("http://", "https://"))
    if rest:
        return RestClient(server, model=args.model, timeout=args.timeout)
    return ServingClient(server, model=args.model, timeout=args.timeout)


class Predictor:
    """Sends chunks, splitting one the server finds too large and keeping the smaller size."""

    def __init__(self, client, version: int | None, batch_size: int) -> None:
        self.client, self.version, self.batch_size = client, version, batch_size

    def run(self, chunk: list[Item]) -> None:
        from serving.client import ClientError, NotServed, TooLarge, Unreachable

        try:
            predictions = self.client.predict_images_checked(np.stack([i.pixels for i in chunk]), version=self.version)
        except TooLarge as e:
            if len(chunk) == 1:
                chunk[0].error = f"the server refused it as too large: {e}"
                return
            half = len(chunk) // 2
            self.batch_size = min(self.batch_size, half)
            self.run(chunk[:half])
            self.run(chunk[half:])
            return
        except (Unreachable, NotServed):
            raise
        except ClientError as e:
            for item in chunk:
                item.error = f"the server failed on this chunk: {e}"
            return
        for item, prediction in zip(chunk, predictions):
            item.answer = answer(prediction)


def cmd_predict(args: argparse.Namespace) -> int:
    from serving.client import ClientError

    def say(text: str) -> None:
        print(f"fmnist predict: {text}", file=sys.stderr)

    limit = row_limit(args.limit, "--limit")
    batch_size = positive_int(args.batch_size, "--batch-size")
    max_pixels = positive_int(args.max_megapixels, "--max-megapixels") * 1_000_000
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be more than 0 seconds, got {args.timeout:g}")
    sources = expand(args.inputs)
    files = [s for s in sources if isinstance(s, Path)]
    if not files:
        for s in sources:
            say(f"{s.name}: {s.error}")
        raise UsageError("nothing to predict")
    try:
        client = make_client(args)
        client.check_signature(SIGNATURE, version=args.version)
    except ClientError as e:  # no server there, or not this model: one line, exit 2 (run_command)
        raise UsageError(str(e)) from None
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    writer = Writer(args.format, out)
    progress = Progress(len(files), enabled=not args.quiet)
    predictor = Predictor(client, args.version, batch_size)
    done = failed = 0
    stream = items(sources, limit, max_pixels)
    pending: list[Item] = []

    def flush() -> None:
        nonlocal done, failed, pending
        good = [i for i in pending if i.error is None]
        for start in range(0, len(good), predictor.batch_size):
            predictor.run(good[start:start + predictor.batch_size])
        for item in pending:
            if item.error:
                failed += 1
                say(f"{item.name}: {item.error}")
            elif not args.quiet:
                for warning in item.warnings:
                    say(f"warning: {item.name}: {warning}")
            writer.write(item)
        done += len(pending)
        pending = []
        progress.update(done, failed)

    try:
        for item in stream:
            pending.append(item)
            if sum(i.error is None for i in pending) >= predictor.batch_size:
                flush()
        flush()
    except ClientError as e:  # the server went away or stopped serving the model mid-run
        raise UsageError(str(e)) from None
    finally:
        writer.close()
        if out is not sys.stdout:
            out.close()
        client.close()
    progress.update(done, failed, final=True)
    if failed:
        say(f"{failed} of {done} inputs failed")
    return 1 if failed else 0


def positive_int(text: str | int, option: str) -> int:
    """Checked here, not by argparse, so a bad value is one line (argparse adds its usage text)."""
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{option} must be a whole number, got {text!r}") from None
    if value < 1:
        raise UsageError(f"{option} must be at least 1, got {value}")
    return value


def row_limit(text: str | int, option: str) -> int | None:
    return None if str(text).lower() == "all" else positive_int(text, option)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="photos (any format PIL reads), folders (searched recursively), globs, Kaggle CSVs")
    parser.add_argument("--server", help="gRPC host:port (default 127.0.0.1:8500), or the REST port with --rest "
                                         "(default 127.0.0.1:8501) or an http(s):// URL")
    parser.add_argument("--rest", action="store_true", help="use TF Serving's REST API instead of gRPC")
    parser.add_argument("--model", default="fmnist")
    parser.add_argument("--version", type=int)
    parser.add_argument("--limit", default="20", metavar="N|all", help="rows per CSV (default 20)")
    parser.add_argument("--format", choices=("text", "csv", "json"), default="text")
    parser.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    parser.add_argument("--output", "-o", help="write the answers here instead of standard output")
    parser.add_argument("--batch-size", default="256", help="inputs per request (split if too large)")
    parser.add_argument("--max-megapixels", default=str(DEFAULT_MAX_PIXELS // 1_000_000),
                        help="refuse larger images without decoding them (decompression bombs)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (and to connect)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines or warnings")


def resolve_server(args: argparse.Namespace) -> None:
    if args.server is None:
        args.server = "127.0.0.1:8501" if args.rest else "127.0.0.1:8500"
