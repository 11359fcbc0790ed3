"""The import direction of the packages (README "Architecture"), checked by parsing every import.

    schema/contract.py  <-  components/  <-  pipeline/  <-  kubeflow/
    serving/ is a generic model server: it imports nothing of the project; components/ and
    pipeline/ may use it like a library. tests/, benchmarks/ and tools/ may import anything.
    One named exception: pipeline/cli.py's command table registers `fmnist kubeflow`.

Every `import` and `from ... import` counts, also those inside functions (lazy imports are still
dependencies), so a reversed edge fails here instead of in a review.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schema", "components", "pipeline", "serving", "kubeflow")
PROJECT = PACKAGES + ("tests", "benchmarks", "tools")
# What each layer may import of the project (itself included).
ALLOWED: dict[str, set[str]] = {
    "schema": {"schema"},
    "serving": {"serving"},
    "components": {"schema", "components", "serving"},
    "pipeline": {"schema", "components", "serving", "pipeline"},
    "kubeflow": {"schema", "components", "serving", "pipeline", "kubeflow"},
}
# The one allowed edge against the direction, by file: the `fmnist` command table registers
# `fmnist kubeflow compile` (a lazy import in one registrar function).
EXCEPTIONS = {("pipeline/cli.py", "kubeflow")}


def project_imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, top-level project package) for every import in a module of `package`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom):  # relative: inside its own package
            names = [package]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        else:
            continue
        found += [(node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in PROJECT]
    return sorted(found)


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_each_layer_imports_only_the_layers_below_it(package):
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in modules(package) for line, name in project_imports(path.read_text(), package)
             if name not in ALLOWED[package] and (str(path.relative_to(ROOT)), name) not in EXCEPTIONS]
    assert not wrong, f"{package}/ may import only {sorted(ALLOWED[package])}:\n" + "\n".join(wrong)


def test_the_contract_imports_nothing_but_the_standard_library_future():
    tree = ast.parse((ROOT / "schema" / "contract.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__"}, imported


def test_the_checker_sees_lazy_and_dynamic_imports():
    """A reversed edge hidden in a function or behind __import__ is still found."""
    source = ("import json\n"
              "def f():\n    from pipeline import config\n    return config\n"
              "g = __import__('kubeflow.cli')\n"
              "from . import sibling\n")
    assert project_imports(source, "serving") == [(3, "pipeline"), (5, "kubeflow"), (6, "serving")]


def test_setup_packages_the_contract():
    """The contract ships with the package (setup.py) and the Kubeflow image (Dockerfile)."""
    assert '"schema"' in (ROOT / "setup.py").read_text()
    assert "COPY schema" in (ROOT / "kubeflow" / "Dockerfile").read_text()
