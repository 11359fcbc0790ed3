"""The project's errors share one base per package, and `fmnist` turns them into a status in one
place (pipeline/cli.py, run_command): one line `fmnist <command>: <message>`, the error's exit code.

The class check parses the sources (like test_layers.py), so a new error class that forgets the
base fails here, not when a user first meets its traceback."""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from components.errors import FmnistError
from pipeline import cli
from pipeline.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BUILTIN_ERRORS = {"Exception", "ValueError", "RuntimeError", "LookupError", "KeyError", "OSError", "TypeError"}


def _error_classes(package: str, root: Path = ROOT) -> list[tuple[str, str, list[str]]]:
    """(file, class, base names) of every class in `package`."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                found.append((str(path.relative_to(root)), node.name, bases))
    return found


@pytest.mark.parametrize("package, base", [("components", "FmnistError"), ("pipeline", "FmnistError"),
                                           ("kubeflow", "FmnistError"), ("serving", "Error")])
def test_every_error_class_derives_from_its_packages_base(package, base):
    classes = _error_classes(package)
    names = {name for _, name, _ in classes}
    wrong = [f"{file}: {name}({', '.join(bases)})" for file, name, bases in classes
             if set(bases) & BUILTIN_ERRORS and base not in bases and name != base
             and not set(bases) & names]
    assert not wrong, f"{package}/ errors must derive from {base}:\n" + "\n".join(wrong)


def test_the_checker_reads_bases_as_written(tmp_path):
    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "x.py").write_text("class Bad(ValueError):\n    pass\n"
                                                  "class Good(FmnistError, ValueError):\n    pass\n")
    assert _error_classes("components", tmp_path) == [("components/x.py", "Bad", ["ValueError"]),
                                                       ("components/x.py", "Good", ["FmnistError", "ValueError"])]


def _parser_with(func) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fmnist")
    sub = parser.add_subparsers(dest="command", required=True)
    group = sub.add_parser("models").add_subparsers(dest="models_command", required=True)
    group.add_parser("promote").set_defaults(func=func)
    cli._name_commands(parser)
    return parser.parse_args(["models", "promote"])


@pytest.mark.parametrize("error, code", [(FmnistError("no such version"), 2), (ConfigError("bad field"), 2)])
def test_a_project_error_is_one_line_with_the_command_and_its_exit_code(error, code, capsys):
    def fail(args):
        raise error
    assert cli.run_command(_parser_with(fail)) == code
    assert capsys.readouterr().err == f"fmnist models promote: {error}\n"


def test_download_keeps_its_exit_status_1(capsys, monkeypatch):
    from pipeline import download

    def refuse(*args, **kwargs):
        raise download.DownloadError("checksum does not match")
    monkeypatch.setattr(download, "download", refuse)
    assert cli.main(["data", "download", "--out", "x"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "fmnist data download: checksum does not match"


def test_a_bug_is_not_swallowed():
    def bug(args):
        raise KeyError("not a refusal")
    with pytest.raises(KeyError):
        cli.run_command(_parser_with(bug))


def test_the_real_parser_names_nested_commands(tmp_path, capsys):
    """`fmnist models rollback` on a config without a label: LabelError, exit 2, named as typed."""
    config = tmp_path / "models.config"
    assert cli.main(["models", "rollback", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist models rollback: "), err
