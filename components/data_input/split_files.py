"""Which files feed which split -- chosen so that splits cannot silently mix.

Each split has a glob (`train_pattern`, `test_pattern`) matched against whole file names directly
in `data_root` (TFX's ExampleGen driver fingerprints the same glob, so caching follows the files).
On top of the glob:
* backup and hidden files are never data: dotfiles (also editors' `.#name` locks and LibreOffice's
  `.~lock.name#`), `name~`, `#name#`, and `.bak .orig .old .swp .swo .tmp .part .crdownload .rej`;
  they are listed as ignored;
* each split must match exactly the expected number of files (1 unless configured), so a second
  training CSV or a leftover copy stops the run instead of duplicating rows;
* no file may feed two splits.
Every refusal lists what matched, so the fix is obvious.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
from types import SimpleNamespace
from typing import Any

from components.errors import FmnistError

# Above this share of a split's images also found in the training split, ExampleGen stops the run
# (components/data_input/csv_example_gen.py checks it; pipeline/config.py's field defaults to it).
DEFAULT_MAX_DUPLICATE_SHARE = 0.01
BACKUP_SUFFIXES = (".bak", ".orig", ".old", ".swp", ".swo", ".tmp", ".part", ".crdownload", ".rej")


# Local paths through the standard library, so `fmnist run` can check them before TensorFlow
# (which TFX's fileio imports) has started; URIs (gs://...) through TFX's fileio.
def _local_glob(pattern: str) -> list[str]:
    """glob over one directory, hidden names included (as TFX's fileio.glob does)."""
    root, name = os.path.split(pattern)
    return [os.path.join(root, n) for n in os.listdir(root) if fnmatch.fnmatchcase(n, name)]


_LOCAL = SimpleNamespace(exists=os.path.exists, isdir=os.path.isdir, listdir=os.listdir, glob=_local_glob)


def _fs(path: str) -> Any:
    if "://" not in path:
        return _LOCAL
    from tfx.dsl.io import fileio
    return fileio


class DataSelectionError(FmnistError, ValueError):
    """The data directory or a split's files are not what the config asks for."""


@dataclasses.dataclass
class SplitFiles:
    split: str
    pattern: str
    files: list[str]                      # full paths, sorted
    ignored: list[tuple[str, str]]        # (file name, why)


def ignored_reason(name: str) -> str | None:
    """Why a file name is never read as data (None if it may be)."""
    if name.startswith("."):
        return "hidden file"
    if name.endswith("~") or (name.startswith("#") and name.endswith("#")):
        return "editor backup"
    if name.lower().endswith(BACKUP_SUFFIXES):
        return "backup copy"
    return None


def check_data_root(data_root: str) -> None:
    if not data_root:
        raise DataSelectionError("data_root is empty; set it to the directory holding the CSVs")
    fileio = _fs(data_root)
    if not fileio.exists(data_root):
        raise DataSelectionError(f"data_root {data_root} does not exist; set it (--data DIR) to the "
                                 "directory holding the training and test CSVs")
    if not fileio.isdir(data_root):
        raise DataSelectionError(f"data_root {data_root} is not a directory; set it to the directory "
                                 "holding the CSVs, not to a file")


def match_split(data_root: str, split: str, pattern: str) -> SplitFiles:
    """The regular files of data_root whose whole name matches `pattern`, backups left out."""
    files, ignored = [], []
    fileio = _fs(data_root)
    # A span's pattern carries its directory (`span-3/*_train.csv*`, after TFX's driver has put
    # the span number in); the name part is matched as for a plain pattern.
    name_pattern = os.path.basename(pattern)
    if not fileio.isdir(os.path.dirname(os.path.join(data_root, pattern))):
        return SplitFiles(split, pattern, files, ignored)
    for path in sorted(fileio.glob(os.path.join(data_root, pattern))):
        name = os.path.basename(path.rstrip("/"))
        if not fnmatch.fnmatchcase(name, name_pattern):
            continue
        why = "directory" if fileio.isdir(path) else ignored_reason(name)
        if why:
            ignored.append((name, why))
        else:
            files.append(path)
    return SplitFiles(split, pattern, files, ignored)


def _names(paths: list[str]) -> str:
    return ", ".join(os.path.basename(p) for p in paths)


def select_splits(data_root: str, patterns: dict[str, str],
                  expected: dict[str, int] | None = None) -> dict[str, SplitFiles]:
    """{split: its files}; raises DataSelectionError listing every problem and what matched."""
    check_data_root(data_root)
    expected = expected or {}
    selected = {split: match_split(data_root, split, p) for split, p in patterns.items()}
    problems = []
    for split, sel in selected.items():
        want = int(expected.get(split, 1))
        ignored = (f"; ignored: {', '.join(f'{n} ({why})' for n, why in sel.ignored)}"
                   if sel.ignored else "")
        if not sel.files:
            folder = os.path.dirname(os.path.join(data_root, sel.pattern))
            present = (sorted(n for n in _fs(data_root).listdir(folder) if not ignored_reason(n))
                       if _fs(data_root).isdir(folder) else [])
            problems.append(f"split '{split}': no file in {folder} matches {os.path.basename(sel.pattern)!r}"
                            f"{ignored} (files there: {', '.join(present) or 'none'}); set "
                            f"{split}_pattern to the file's name")
        elif len(sel.files) != want:
            problems.append(f"split '{split}': {sel.pattern!r} matched {len(sel.files)} files but "
                            f"{want} {'is' if want == 1 else 'are'} expected ({split}_file_count): "
                            f"{_names(sel.files)}{ignored}; remove the extra files or name the file "
                            f"exactly in {split}_pattern")
    owners: dict[str, list[str]] = {}
    for split, sel in selected.items():
        for path in sel.files:
            owners.setdefault(path, []).append(split)
    for path, splits in sorted(owners.items()):
        if len(splits) > 1:
            problems.append(f"{os.path.basename(path)} is matched by the patterns of "
                            + " and ".join(f"split '{s}' ({selected[s].pattern!r})" for s in splits)
                            + "; a file may feed one split only -- make the patterns name distinct files")
    if problems:
        raise DataSelectionError(f"split files in {data_root}:\n  " + "\n  ".join(problems))
    return selected
