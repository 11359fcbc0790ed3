"""Property: a file with the canonical rows, written in any layout real tools produce, is read as
exactly those rows -- or refused naming the file (and the line where one applies).

Each seeded trial draws a layout: the columns in some order (as is, label last, reversed,
shuffled), line ends (LF, CRLF, CR, or a random one per line), a byte-order mark or not, a quoting
style (none, every cell and name, names only, cells padded inside and out, a space after every
comma), blank lines (none, or a few anywhere), trailing separators (none, on every line, on the
data rows only), a final line end or not, gzip or not, and the chunk size the reader uses (smaller
than a row, about a row, the whole file). Trailing separators must be refused (header: an
unexpected empty column; rows only: the first row's cell count); every other layout must give the
canonical table with the line numbers, blank-line count, byte-order mark and line ends the
generator wrote -- and the lenient reading (`fmnist predict`) the same pixels. Bounded: a fixed
number of trials of a few rows, no pipeline, no Beam (a few seconds).
"""
from __future__ import annotations

import dataclasses
import gzip
import random

import numpy as np

from components.data_input.csv_table import BOM, CsvFormatError, CsvReader
from data_input_helpers import make_row
from schema.contract import CSV_COLUMNS, LABEL_KEY

ROWS = [make_row(i % 10, 500 + i) for i in range(6)]
TRIALS = 300
ENDS = {"LF": "\n", "CRLF": "\r\n", "CR": "\r"}


@dataclasses.dataclass
class Layout:
    """One drawn layout and what reading it must find."""
    text: bytes
    gz: bool
    chunk_bytes: int
    description: str
    data_lines: list[int]        # file line of each canonical row
    header_line: int
    blank_lines: int
    byte_order_mark: bool
    line_ends: str
    trailing: str                # "", "all" or "rows": where a trailing separator was added


def _columns(rng: random.Random) -> tuple[str, list[str]]:
    kind = rng.choice(["as is", "label last", "reversed", "shuffled"])
    columns = list(CSV_COLUMNS)
    if kind == "label last":
        columns = columns[1:] + [LABEL_KEY]
    elif kind == "reversed":
        columns.reverse()
    elif kind == "shuffled":
        rng.shuffle(columns)
    return kind, columns


def _quoted(rng: random.Random, style: str, cells: list[str], names: bool) -> list[str]:
    if style == "every cell and name":
        return [f'"{c}"' for c in cells]
    if style == "names only":
        return [f'"{c}"' for c in cells] if names else cells
    if style == "padded inside and out":
        return [rng.choice(["{}", ' "{}" ', '"\t{} "', " {}\t"]).format(c) for c in cells]
    if style == "space after every comma":
        return cells[:1] + [" " + c for c in cells[1:]]
    return cells


def draw(rng: random.Random) -> Layout:
    order_kind, columns = _columns(rng)
    at = [CSV_COLUMNS.index(c) for c in columns]
    end_kind = rng.choice(["LF", "CRLF", "CR", "mixed"])
    quoting = rng.choice(["none", "every cell and name", "names only", "padded inside and out",
                          "space after every comma"])
    blanks = rng.random() < 0.5
    trailing = rng.choice(["", "", "", "all", "rows"])
    final_end = rng.random() < 0.7
    bom = rng.random() < 0.3
    gz = rng.random() < 0.3
    chunk_bytes = rng.choice([97, 3000, 1 << 24])

    # (content, is blank) per line of the file, header and rows in order
    lines: list[tuple[str, str]] = []                # (kind, text); kind: blank, header, row
    if blanks:
        lines += [("blank", rng.choice(["", " ", "\t"])) for _ in range(rng.randrange(3))]
    header = ",".join(_quoted(rng, quoting, columns, names=True)) + ("," if trailing == "all" else "")
    lines.append(("header", header))
    for row in ROWS:
        if blanks and rng.random() < 0.3:
            lines.append(("blank", rng.choice(["", "  ", "\t "])))
        cells = _quoted(rng, quoting, [str(row[i]) for i in at], names=False)
        lines.append(("row", ",".join(cells) + ("," if trailing else "")))
    if blanks:
        lines += [("blank", rng.choice(["", " "])) for _ in range(rng.randrange(3))]
    if not final_end and lines[-1][1] == "":
        lines[-1] = ("blank", " ")                   # an unterminated empty last line is no line

    ends: list[str] = []
    for i, (_, text) in enumerate(lines):
        kind = rng.choice(list(ENDS)) if end_kind == "mixed" else end_kind
        # a CR before an empty line ended by LF would make one CRLF of two line ends
        if ends and ends[-1] == "\r" and text == "" and ENDS[kind].startswith("\n"):
            kind = "CR"
        ends.append(ENDS[kind])
    if not final_end:
        ends[-1] = ""
    text = "".join(t + e for (_, t), e in zip(lines, ends))
    used = {k for k, e in ENDS.items() if e in ends}
    line_ends = next(iter(used)) if len(used) == 1 else "mixed" if used else ""
    kinds = [k for k, _ in lines]
    return Layout(
        text=(BOM if bom else b"") + text.encode(), gz=gz, chunk_bytes=chunk_bytes,
        description=(f"columns {order_kind}, {end_kind} line ends, quoting {quoting}, blanks {blanks}, "
                     f"trailing {trailing or 'none'}, final end {final_end}, BOM {bom}, gzip {gz}, "
                     f"chunk {chunk_bytes}"),
        data_lines=[i + 1 for i, k in enumerate(kinds) if k == "row"], header_line=kinds.index("header") + 1,
        blank_lines=kinds.count("blank"), byte_order_mark=bom, line_ends=line_ends, trailing=trailing)


def test_any_layout_reads_as_the_canonical_rows_or_is_refused_naming_file_and_line(tmp_path):
    rng = random.Random(20261133)
    canonical = np.array(ROWS, dtype=np.int64)
    outcomes = {"read": 0, "refused": 0}
    seen: set[str] = set()
    for trial in range(TRIALS):
        layout = draw(rng)
        path = str(tmp_path / f"layout-{trial}.csv{'.gz' if layout.gz else ''}")
        with open(path, "wb") as f:
            f.write(gzip.compress(layout.text) if layout.gz else layout.text)
        reader = CsvReader(path, chunk_bytes=layout.chunk_bytes)
        where = f"trial {trial}: {layout.description}"
        try:
            chunks = list(reader)
        except CsvFormatError as e:
            outcomes["refused"] += 1
            message = str(e)
            assert layout.trailing, (where, message)
            assert message.startswith(path), (where, message)
            if layout.trailing == "all":
                assert f"line {layout.header_line} (header): unexpected column(s) (empty name)" in message, \
                    (where, message)
            else:
                assert f"line {layout.data_lines[0]} has 786 cells" in message, (where, message)
            continue
        outcomes["read"] += 1
        assert not layout.trailing, where
        np.testing.assert_array_equal(np.concatenate([c.values for c in chunks]), canonical, err_msg=where)
        assert all(c.values.flags["C_CONTIGUOUS"] for c in chunks), where
        assert np.concatenate([c.line_numbers for c in chunks]).tolist() == layout.data_lines, where
        assert (reader.rows, reader.blank_lines, reader.byte_order_mark, reader.line_ends) == (
            len(ROWS), layout.blank_lines, layout.byte_order_mark, layout.line_ends), where
        lenient = list(CsvReader(path, chunk_bytes=layout.chunk_bytes).lenient_rows())
        assert [r.error for r in lenient] == [None] * len(ROWS), where
        assert [r.line for r in lenient] == layout.data_lines, where
        np.testing.assert_array_equal(np.array([r.pixels for r in lenient]), canonical[:, 1:], err_msg=where)
        assert [int(r.label) for r in lenient] == canonical[:, 0].tolist(), where
        seen.add(layout.description.split(",")[0] + layout.description.split(",")[1])
    # every column order was read with every kind of line end, and the refusals were drawn too
    assert len(seen) == 16 and outcomes["refused"] > 30, (sorted(seen), outcomes)
