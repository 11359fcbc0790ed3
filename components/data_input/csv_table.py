"""Exact parsing of one Kaggle-layout CSV file (label,pixel1..pixel784) into an int64 table.

Why a parser of our own: NumPy's text parser is fast but lenient (a cell that is only spaces, or a
lone '-', comes back as 0 -- a silent relabelling to class 0); the stock readers are either Python
per cell (the csv module, the stock CsvExampleGen) or columnar (pyarrow, which then has to turn
785 columns into rows); both are slower than NumPy (figures: BENCHMARKS.md, "Exact data input"). So the bytes
are checked first with whole-buffer C operations (`bytes.translate`, `replace`, substring
search; a plain export costs one translate and three searches), and only a buffer made of
nothing but integer literals and commas is handed to NumPy. The grammar, per cell:

    cell    := blank* ( integer | '"' blank* integer blank* '"' ) blank*     blank := ' ' | TAB
    integer := ['+' | '-'] digit+          (value strictly inside the signed 64-bit range)

What real exports add is accepted: a UTF-8 byte-order mark (Excel's "CSV UTF-8"), CRLF and CR-only
line ends (Excel's "CSV (Macintosh)"; CR, LF and CRLF each end a line, as in Python's universal
newlines, so a file mixing them -- pieces joined from different tools -- is read line by line as an
editor shows it), RFC 4180 quoted numbers and names (pandas' QUOTE_ALL, Google Sheets), blank lines
(skipped and counted), the columns in any order (matched by header name). Anything else stops the
file with file, line, column and the cell's text -- never a default. Whatever goes wrong, the
caller gets a CsvFormatError in the project's words naming the file: an error nobody foresaw
(an I/O failure, a bug) becomes "could not read FILE: <reason>", its traceback logged at INFO
(`fmnist --verbose`), so no Python, NumPy or Beam message is ever the user's answer.

`fmnist predict` reads CSVs through the same reader in its lenient mode (CsvReader.lenient_rows):
a row that breaks the grammar is reported with file, line and column and the other rows go on.

Files are read in chunks of rows (CsvReader: ~16 MB of text at a time, streamed and gunzipped on
the fly), so memory stays flat whatever the file's size; the whole-buffer checks run per chunk.
"""
from __future__ import annotations

import collections
import dataclasses
import gzip
import logging
import re
import zlib
from typing import Any, BinaryIO, Iterator, TypeVar

import numpy as np

from components.errors import FmnistError
from schema.contract import CSV_COLUMNS, LABEL_KEY, PIXEL_KEYS

log = logging.getLogger(__name__)
_T = TypeVar("_T")

BOM = b"\xef\xbb\xbf"
MAX_REPORTED = 5
EMPTY_FILE = "the file is empty (expected a header line)"
CHUNK_BYTES = 16 << 20               # text parsed at once: ~9,000 rows, ~60 MB as int64 values
MAX_LINE_BYTES = 64 << 20            # a longer line is not a row of 785 integers
MAX_SHOWN_CHARS = 40                 # a cell or name longer than this is shown cut, with its length
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
_PLAIN = b"0123456789,"
_NUMERIC = b"0123456789,+-"
_BLANK = b" \t"
_MARKS = b"\x01\x02"                 # opening / closing quote of a cell while checking quotes
_KEEP_SKELETON = bytes(b for b in range(256) if b not in b",\x01\x02")
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_BAD_QUOTE_SKELETON = (b"\x01,", b",\x02", b"\x01\x01", b"\x02\x02", b"\x02\x01")
_BAD_SIGN = (b"0-", b"0+", b"--", b"-+", b"+-", b"++", b"-,", b"+,")
_CELL = re.compile(rb'[ \t]*(?:"[ \t]*([-+]?[0-9]+)[ \t]*"|([-+]?[0-9]+))[ \t]*')


class CsvFormatError(FmnistError, ValueError):
    """The CSV cannot be read as the expected table; the message names file, lines and columns."""

    def __init__(self, message: str, rows_refused: int = 0) -> None:
        super().__init__(message)
        self.rows_refused = rows_refused


def _os_reason(error: OSError) -> str:
    """An operating-system failure in words (the errno's text, not Python's exception)."""
    details = getattr(error, "exception_details", None)     # Beam's BeamIOError wraps the real one
    if isinstance(details, dict):
        inner = next((e for e in details.values() if isinstance(e, OSError)), None)
        if inner is not None:
            return _os_reason(inner)
    if isinstance(error, FileNotFoundError):
        return "the file does not exist"
    if isinstance(error, IsADirectoryError):
        return "it is a directory, not a file"
    if isinstance(error, PermissionError):
        return "permission denied"
    return f"input/output error ({error.strerror})" if error.strerror else "input/output error"


def unreadable(path: str, error: BaseException) -> CsvFormatError:
    """The refusal for an error nobody foresaw while reading `path`: "could not read FILE: <reason>"
    in the project's words. The exception itself goes to the log at INFO (with its traceback:
    `fmnist --verbose` shows it), never into the message -- the user is told what happened to
    the file, not which Python call failed."""
    log.info("could not read %s", path, exc_info=error)
    if isinstance(error, MemoryError):
        reason = "out of memory"
    elif isinstance(error, OSError):
        reason = _os_reason(error)
    else:
        reason = "unexpected error in the CSV reader (a bug: `fmnist --verbose` logs the details)"
    return CsvFormatError(f"could not read {path}: {reason}")


def _gzip_error(path: str, error: BaseException) -> CsvFormatError:
    """A gzip stream that cannot be decompressed, said without zlib's or gzip's wording."""
    why = ("the compressed data ends early: a truncated download or copy?" if isinstance(error, EOFError)
           else "corrupt compressed data")
    return CsvFormatError(f"{path}: not a readable gzip file ({why}); fetch or copy it again")


@dataclasses.dataclass
class CsvTable:
    """One file's rows in (label, pixel1..pixel784) order, and what reading it found."""
    path: str
    values: np.ndarray          # int64 [rows, 785], C-contiguous
    line_numbers: np.ndarray    # 1-based line of the file each row came from
    blank_lines: int            # empty or blank-only lines skipped
    byte_order_mark: bool
    line_ends: str              # "LF", "CRLF", "CR", "mixed" or "" (a single line without an end)


def listed(items: list[str], limit: int = MAX_REPORTED, total: int | None = None) -> str:
    """The first `limit` items, and how many more there are (of `total`, if more than listed)."""
    total = len(items) if total is None else total
    more = f" (and {total - limit} more)" if total > limit else ""
    return ", ".join(items[:limit]) + more


def shown(text: bytes | str) -> str:
    """A cell or name as the user should see it: quoted, with invisible characters escaped."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    cut = text[:MAX_SHOWN_CHARS]
    quoted = repr(cut) if cut.isprintable() and cut.isascii() else ascii(cut)
    return quoted if cut == text else f"{quoted}... ({len(text):,} characters)"


def open_raw(path: str) -> BinaryIO:
    """The file's bytes as stored, through Beam's FileSystems (local files, gs://, ...). Beam is
    imported here, not at module level: `fmnist predict` reads local CSVs without paying for
    Beam's import (~2 s)."""
    import apache_beam as beam

    return beam.io.filesystems.FileSystems.open(
        path, compression_type=beam.io.filesystems.CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    """Whole file, gunzipped when it is gzip (by magic bytes, not by name)."""
    with open_raw(path) as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise _gzip_error(path, e) from None
    return raw


def _name(cell: str) -> str:
    """One header name: surrounding blanks dropped, then RFC 4180 quotes (and blanks inside them)."""
    name = cell.strip(" \t")
    if len(name) > 1 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('""', '"').strip(" \t")
    return name


def parse_header(path: str, line: bytes, number: int = 1) -> list[str]:
    """Column names of the header line (file line `number`): split at commas, quoted names allowed,
    surrounding blanks dropped. Split by hand, not by the csv module: a name is never a quoted
    comma, and the module's own errors (field size limit, stray line ends) are not the user's."""
    where = f"{path}, line {number} (header)"
    if b"\x00" in line or line[:2] in (b"\xff\xfe", b"\xfe\xff") or line[:4] == b"PK\x03\x04":
        raise CsvFormatError(f"{where}: binary content, not a CSV text file (UTF-16 text or a "
                             "spreadsheet saved under a .csv name?); export it as CSV UTF-8")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CsvFormatError(f"{where}: not UTF-8 text (byte 0x{line[e.start]:02x} at byte "
                             f"{e.start + 1} of the line); export it as CSV UTF-8") from None
    names = [_name(cell) for cell in text.split(",")]
    if len(names) == 1 and (";" in text or "\t" in text):
        raise CsvFormatError(f"{where}: the columns are separated by "
                             f"{'semicolons' if ';' in text else 'tabs'}, not commas; export the file "
                             "with ',' as the separator")
    return names


def check_header(path: str, header: list[str], number: int = 1) -> np.ndarray:
    """Where each of label, pixel1..pixel784 is in the file's columns, in that order (any order
    in the file is fine: columns are matched by name); raises naming what is wrong. Sets and
    counters, not list scans: a corrupt "header" may have millions of names."""
    problems = []
    position = {name: i for i, name in reversed(list(enumerate(header)))}
    counts = collections.Counter(header)
    expected = set(CSV_COLUMNS)
    missing = [c for c in CSV_COLUMNS if c not in position]
    unexpected = [shown(c) if c else "(empty name)" for c in header if c not in expected]
    duplicated = sorted(c if c in expected else shown(c) for c, n in counts.items() if n > 1)
    if missing:
        problems.append(f"missing column(s) {listed(missing)}")
    if unexpected:
        problems.append(f"unexpected column(s) {listed(unexpected)}"
                        + (" (a ',' at the end of the header line? remove the trailing separators)"
                           if unexpected == ["(empty name)"] and header[-1] == "" else ""))
    if duplicated:
        problems.append(f"duplicated column(s) {listed(duplicated)}")
    if problems:
        raise CsvFormatError(f"{path}, line {number} (header): {'; '.join(problems)}; expected the "
                             f"columns {LABEL_KEY},{PIXEL_KEYS[0]},...,{PIXEL_KEYS[-1]} (in any order)")
    return np.array([position[c] for c in CSV_COLUMNS], dtype=np.intp)


def _drop_blanks_next_to(body: bytes, marks: bytes) -> bytes:
    """Blanks adjacent to any byte of `marks` removed (a few passes of bytes.replace)."""
    for mark in (marks[i:i + 1] for i in range(len(marks))):
        for blank in (b" ", b"\t"):
            for pair, single in ((blank + mark, mark), (mark + blank, mark)):
                while pair in body:
                    body = body.replace(pair, single)
    return body


def _unquote(body: bytes) -> bytes | None:
    """Cells `"<integer>"` reduced to `<integer>`; None if a quote is anywhere but a cell's edges
    or a cell has only one of its two quotes."""
    if b"\x01" in body or b"\x02" in body:
        return None
    marked = (b"," + body + b",").replace(b',"', b",\x01").replace(b'",', b"\x02,")
    if b'"' in marked:
        return None
    skeleton = marked.translate(None, _KEEP_SKELETON)
    if any(bad in skeleton for bad in _BAD_QUOTE_SKELETON):
        return None
    return _drop_blanks_next_to(marked[1:-1], _MARKS).translate(None, _MARKS)


def canonical_cells(body: bytes) -> bytes | None:
    """Comma-joined cells reduced to bare integer literals, or None if any cell breaks the grammar.

    Whole-buffer C operations only (translate, replace, substring search); a plain export
    (digits and commas) costs one translate and three substring searches.
    """
    if body.translate(None, _PLAIN):
        if b" " in body or b"\t" in body:
            body = _drop_blanks_next_to(body, b",").strip(_BLANK)
        if b'"' in body:
            unquoted = _unquote(body)
            if unquoted is None:
                return None
            body = unquoted
        if body.translate(None, _NUMERIC):
            return None
        if b"-" in body or b"+" in body:
            zeroed = body.translate(_DIGITS_TO_ZERO)
            if any(bad in zeroed for bad in _BAD_SIGN) or zeroed[-1:] in (b"-", b"+"):
                return None
    if not body or body[:1] == b"," or body[-1:] == b",":
        return None
    return body     # an empty cell inside (",,") makes to_ints' NumPy parse raise: refused there


def to_ints(body: bytes, cells: int) -> np.ndarray | None:
    """NumPy's parse of a canonical buffer; None if a cell is empty, the count is off or a value
    left int64. (On digits and commas alone NumPy's parser is exact: it raises at an empty cell
    -- `1,,2` -- instead of reading it; only blanks, which canonical_cells has removed, and a
    trailing comma, which the count catches, are read leniently.)"""
    try:
        values = np.fromstring(body, dtype=np.int64, sep=",")
    except ValueError:
        return None
    if values.size != cells or (cells and (values.max() >= _INT64_MAX or values.min() <= _INT64_MIN)):
        return None
    return values


def cell_problem(cell: bytes) -> str | None:
    """Why one cell is not an integer literal (None if it is one)."""
    m = _CELL.fullmatch(cell)
    if not m:
        return "not an integer"
    literal = m.group(1) or m.group(2)
    # more than 19 significant digits is beyond 64 bits (and int() refuses >4300 digits outright)
    if len(literal.lstrip(b"+-").lstrip(b"0")) > 19 or not _INT64_MIN < int(literal) < _INT64_MAX:
        return "outside the 64-bit integer range"
    return None


def _bad_rows(header: list[str], rows: list[bytes], line_numbers: Any, details: list[str]) -> int:
    """How many of `rows` break the grammar; the first offending cells appended to `details`
    (up to MAX_REPORTED + 1, the last one only to say that there are more)."""
    bad_rows = 0
    for row, line in zip(rows, line_numbers):
        body = canonical_cells(row)
        if body is not None and to_ints(body, len(header)) is not None:
            continue
        bad_rows += 1
        for c, cell in enumerate(row.split(b",") if len(details) <= MAX_REPORTED else []):
            problem = cell_problem(cell)
            if problem and len(details) <= MAX_REPORTED:
                details.append(f"line {line} column '{header[c]}' = {shown(cell)} ({problem})")
    return bad_rows


@dataclasses.dataclass
class CsvChunk:
    """Consecutive data rows of one file, in (label, pixel1..pixel784) order."""
    values: np.ndarray          # int64 [rows, 785]
    line_numbers: np.ndarray    # 1-based line of the file each row came from


@dataclasses.dataclass
class CsvRow:
    """One data row of the lenient reading (CsvReader.lenient_rows): its pixels, or why it was refused.

    `number` counts data rows from the header (1 = the line after it; blank lines count, as
    lines do); None for a problem of the whole file. `field` is the column at fault, if one is.
    """
    path: str
    line: int                           # 1-based line of the file (0: not tied to a line)
    number: int | None
    pixels: np.ndarray | None = None    # int64 [784], pixel1..pixel784
    label: str | None = None            # the label cell's text; None without a label column
    field: str | None = None
    error: str | None = None


def _is_gzip(f: BinaryIO) -> bool:
    magic = f.read(2)
    f.seek(0)
    return magic == b"\x1f\x8b"


class CsvReader:
    """One CSV file read as a sequence of row chunks, so memory does not grow with the file.

    Iterating yields CsvChunk after CsvChunk (about `chunk_bytes` of text each, cut at line ends),
    streamed from the file (plain or gzipped). The whole file is always read: when something is
    refused, no further chunk is yielded but the rest is still checked, and the iteration ends
    with one CsvFormatError that names file, lines, columns and cells and counts every refused
    row of the file -- the same verdict and message as reading the file in one piece. Callers
    must therefore treat rows already received as void when the iteration raises. It raises
    nothing else: an unforeseen error is a CsvFormatError too ("could not read FILE: ...").

    `lenient_rows()` reads the same file by the same grammar row by row instead, for rows to be
    answered rather than trained on: a bad row is reported (file, line, column) and skipped, the
    label column is optional.

    After the iteration, `rows`, `blank_lines`, `byte_order_mark` and `line_ends` describe the
    file. `data` (the file's bytes, already decompressed) replaces reading `path`, which then only
    names the file in messages.
    """

    def __init__(self, path: str, chunk_bytes: int = CHUNK_BYTES, data: bytes | None = None) -> None:
        self.path = path
        self.chunk_bytes = chunk_bytes
        self._data = data
        self.rows = 0
        self.blank_lines = 0
        self.byte_order_mark = False
        self._ends: set[str] = set()
        self.header: list[str] | None = None
        self.header_line = 0

    @property
    def line_ends(self) -> str:
        """The file's line ends: "LF", "CRLF", "CR", "mixed", or "" (one line without an end)."""
        return next(iter(self._ends)) if len(self._ends) == 1 else "mixed" if self._ends else ""

    def _guarded(self, items: Iterator[_T]) -> Iterator[_T]:
        """`items`, with any error other than a CsvFormatError turned into one (see unreadable)."""
        try:
            yield from items
        except CsvFormatError:
            raise
        except Exception as e:  # the point: nothing unforeseen reaches the user raw
            raise unreadable(self.path, e) from None

    def _blocks(self) -> Iterator[bytes]:
        """The file's text, `chunk_bytes` at a time (gunzipped on the fly when it is gzip, by
        magic bytes, not by name)."""
        if self._data is not None:
            for start in range(0, len(self._data), self.chunk_bytes):
                yield self._data[start:start + self.chunk_bytes]
            return
        with open_raw(self.path) as f:
            if not _is_gzip(f):
                yield from iter(lambda: f.read(self.chunk_bytes), b"")
                return
            with gzip.GzipFile(fileobj=f, mode="rb") as text:
                while True:
                    try:
                        block = text.read(self.chunk_bytes)
                    except (OSError, EOFError, zlib.error) as e:
                        raise _gzip_error(self.path, e) from None
                    if not block:
                        return
                    yield block

    def _segments(self) -> Iterator[bytes]:
        """The text in pieces that end at a line end (the last one may not), BOM removed.

        A line end is LF, CR or CRLF. A piece never ends at a CR that is the last byte read so
        far: its LF may be the next block's first byte, and a CRLF cut in two would count as two
        line ends (a blank line, and every later line number off by one)."""
        pending, first = b"", True
        for block in self._blocks():
            data = pending + block if pending else block
            end = len(data) - 1 if data[-1:] == b"\r" else len(data)
            lf = data.rfind(b"\n", 0, end)
            cut = max(lf, data.rfind(b"\r", lf + 1, end)) + 1
            if not cut:
                if len(data) > MAX_LINE_BYTES:
                    raise CsvFormatError(f"{self.path}: more than {MAX_LINE_BYTES >> 20} MiB without a "
                                         "line end; not a CSV text file")
                pending = data
                continue
            segment, pending = data[:cut], data[cut:]
            if first:
                first, segment = False, self._without_bom(segment)
            yield segment
        if first:
            pending = self._without_bom(pending)
        if pending:
            yield pending

    def _without_bom(self, text: bytes) -> bytes:
        self.byte_order_mark = text.startswith(BOM)
        return text[len(BOM):] if self.byte_order_mark else text

    def _lf_only(self, segment: bytes) -> bytes:
        """The segment with every line end made LF, noting which kinds it had. An LF-only text
        costs one substring search; CRs cost three counts and one or two replaces."""
        if b"\r" not in segment:
            if b"\n" in segment:
                self._ends.add("LF")
            return segment
        crlf = segment.count(b"\r\n")
        cr, lf = segment.count(b"\r") - crlf, segment.count(b"\n") - crlf
        self._ends.update(kind for kind, n in (("CRLF", crlf), ("CR", cr), ("LF", lf)) if n)
        segment = segment.replace(b"\r\n", b"\n") if crlf else segment
        return segment.replace(b"\r", b"\n") if cr else segment

    def _data_lines(self) -> Iterator[tuple[int, list[bytes]]]:
        """The lines after the header, a segment at a time, each batch with the number of the
        file line before its first one; the first batch comes as soon as the header is read (it
        may hold no line). Sets `header` and `header_line`, notes the line ends and the
        byte-order mark, counts blank lines before the header. Both reading modes (iteration and
        `lenient_rows`) use it."""
        self.rows = self.blank_lines = 0
        self.byte_order_mark = False
        self._ends = set()
        self.header, self.header_line = None, 0
        line = 0                                    # lines of the file consumed so far
        for segment in self._segments():
            lines = self._lf_only(segment).split(b"\n")
            if lines[-1] == b"":
                lines.pop()                         # the last line's terminator, not a line
            start = line
            line += len(lines)
            if self.header is None:
                first = next((i for i, text in enumerate(lines) if text.strip(b" \t")), None)
                if first is None:
                    self.blank_lines += len(lines)
                    continue
                self.blank_lines += first
                self.header_line = start + first + 1
                self.header = parse_header(self.path, lines[first], self.header_line)
                lines = lines[first + 1:]
                start += first + 1
            yield start, lines

    def __iter__(self) -> Iterator[CsvChunk]:
        return self._guarded(self._chunks())

    def _chunks(self) -> Iterator[CsvChunk]:
        path = self.path
        header: list[str] | None = None
        order = np.empty(0, np.intp)               # file column of label, pixel1, ... (by name)
        reordered = False
        wrong: list[str] = []                       # the first lines with a wrong cell count
        wrong_lines = bad_rows = 0
        details: list[str] = []
        for start, lines in self._data_lines():
            if header is None:
                header = self.header
                order = check_header(path, header, self.header_line)
                reordered = bool((order != np.arange(len(order))).any())
            expected = len(header) - 1
            rows, numbers = lines, None
            counts = [text.count(b",") for text in rows]
            if counts.count(expected) != len(counts):   # blank lines or wrong cell counts: sort them out
                kept, numbers = [], []
                for i, (text, count) in enumerate(zip(rows, counts), start=start + 1):
                    if count == expected:
                        kept.append(text)
                        numbers.append(i)
                    elif not text.strip(b" \t"):
                        self.blank_lines += 1
                    else:
                        wrong_lines += 1
                        if len(wrong) < MAX_REPORTED:
                            wrong.append(f"line {i} has {count + 1} cells")
                rows = kept
            self.rows += len(rows)
            if wrong_lines or not rows:
                continue                            # the cell-count verdict wins; values are moot
            numbers = (np.arange(start + 1, start + 1 + len(rows), dtype=np.int64) if numbers is None
                       else np.asarray(numbers, dtype=np.int64))
            body = canonical_cells(b",".join(rows))
            values = None if body is None else to_ints(body, len(rows) * len(header))
            if values is None:
                found = _bad_rows(header, rows, numbers, details)
                if not found:  # cannot happen if canonical_cells and cell_problem agree; never pass
                    raise CsvFormatError(f"{path}: the cells could not be read as integers", len(rows))
                bad_rows += found
                continue
            if bad_rows:
                continue                            # the file is refused; keep counting
            table = values.reshape(len(rows), len(header))
            # take() gives a new C-ordered table; a[:, order] would give a Fortran-ordered one,
            # whose rows are not contiguous (the image hashes need them to be).
            yield CsvChunk(table.take(order, axis=1) if reordered else table, numbers)
        if header is None:
            raise CsvFormatError(f"{path}: {EMPTY_FILE}")
        if wrong_lines:
            raise CsvFormatError(f"{path}: the header has {len(header)} columns but "
                                 f"{listed(wrong, total=wrong_lines)}; the file is truncated or has "
                                 "stray or missing commas", wrong_lines)
        if not self.rows:
            raise CsvFormatError(f"{path}: the file has a header but no data rows"
                                 + (f" ({self.blank_lines} blank lines)" if self.blank_lines else ""))
        if bad_rows:
            raise CsvFormatError(
                f"{path}: {bad_rows} of {self.rows} data rows refused; every cell must be an integer "
                f"(optionally quoted, surrounding spaces allowed), but "
                f"{', '.join(details[:MAX_REPORTED])}{' (and more)' if len(details) > MAX_REPORTED else ''}",
                bad_rows)

    def lenient_rows(self, limit: int | None = None) -> Iterator[CsvRow]:
        """The lenient reading, for rows to be answered rather than trained on (`fmnist predict`):
        the `label` column is optional and may hold any text, other extra columns are ignored,
        and a row that cannot be read is yielded as a CsvRow with its error (and the column at
        fault) while the rows after it are still read. A problem of the whole file (empty, no
        pixel columns, not CSV text, an unreadable gzip stream, anything unforeseen) is one CsvRow
        with `number` None, and ends the reading. `limit`: at most this many data rows, good or
        refused (a blank line counts as a row, as in the row numbers, but is not yielded)."""
        try:
            yield from self._guarded(self._lenient_rows(limit))
        except CsvFormatError as e:   # the row names the file: the message need not
            message = str(e).replace(f"could not read {self.path}", "could not read the file", 1)
            yield CsvRow(self.path, 0, None, error=message.removeprefix(self.path).lstrip(":, "))

    def _lenient_rows(self, limit: int | None) -> Iterator[CsvRow]:
        """lenient_rows without its error handling: columns by name, a CsvRow per data row."""
        pixel_at: list[int] | None = None
        label_at: int | None = None
        for start, lines in self._data_lines():
            if pixel_at is None:
                header = self.header
                position = {name: i for i, name in reversed(list(enumerate(header)))}
                missing = [k for k in PIXEL_KEYS if k not in position]
                if missing:
                    yield CsvRow(self.path, self.header_line, None, error=(
                        f"CSV header lacks {len(missing)} pixel columns (first: {missing[0]}); "
                        f"expected {LABEL_KEY},{PIXEL_KEYS[0]}..{PIXEL_KEYS[-1]}"))
                    return
                pixel_at = [position[k] for k in PIXEL_KEYS]
                label_at = position.get(LABEL_KEY)
            for line, text in enumerate(lines, start=start + 1):
                number = line - self.header_line
                if limit is not None and number > limit:
                    return
                if not text.strip(b" \t"):
                    self.blank_lines += 1
                    continue
                self.rows += 1
                yield self._lenient_row(line, number, text.split(b","), pixel_at, label_at)
        if self.header is None:
            yield CsvRow(self.path, 0, None, error="empty CSV file")

    def _lenient_row(self, line: int, number: int, cells: list[bytes], pixel_at: list[int],
                     label_at: int | None) -> CsvRow:
        """One data row read by the same cell grammar as the strict reading."""
        row = CsvRow(self.path, line, number)
        if len(cells) != len(self.header):
            row.error = f"{len(cells)} values, the header has {len(self.header)} columns"
            return row
        pixels = [cells[c] for c in pixel_at]
        body = canonical_cells(b",".join(pixels))
        values = None if body is None else to_ints(body, len(pixels))
        if values is None:
            at = next((i for i, cell in enumerate(pixels) if cell_problem(cell)), None)
            if at is None:  # cannot happen if canonical_cells and cell_problem agree; never pass
                row.error = "the cells could not be read as integers"
                return row
            row.field = PIXEL_KEYS[at]
            text = pixels[at].decode("utf-8", "backslashreplace").strip(" \t")
            row.error = f"{row.field} is {text[:20]!r}, {cell_problem(pixels[at])}"
            return row
        row.pixels = values
        if label_at is not None:
            label = cells[label_at].decode("utf-8", "backslashreplace").strip(" \t")
            row.label = label[1:-1].strip(" \t") if len(label) > 1 and label[0] == label[-1] == '"' else label
        return row


def _table(reader: CsvReader) -> CsvTable:
    chunks = list(reader)
    values = (np.concatenate([c.values for c in chunks]) if len(chunks) != 1 else chunks[0].values)
    numbers = (np.concatenate([c.line_numbers for c in chunks]) if len(chunks) != 1
               else chunks[0].line_numbers)
    return CsvTable(reader.path, values, numbers, reader.blank_lines, reader.byte_order_mark,
                    reader.line_ends)


def parse_table(path: str, raw: bytes) -> CsvTable:
    """The file's bytes (decompressed) as one table; raises CsvFormatError naming file, line,
    column and cell. Holds the whole table: for files of any size iterate a CsvReader."""
    return _table(CsvReader(path, data=raw))


def read_table(path: str) -> CsvTable:
    """One CSV file (plain or gzipped) as one table (see parse_table)."""
    return _table(CsvReader(path))
