"""Every test file is in tests/unit or tests/e2e, so `make test-unit` and `make test` see all of
them, and no unit test starts the pipeline (the session fixture `sample_run` is e2e-only)."""
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_file_is_unit_or_e2e() -> None:
    stray = [str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py") if p.parent.name not in ("unit", "e2e")]
    assert stray == [], f"move these into tests/unit (fast, no pipeline run/server) or tests/e2e: {stray}"


def test_no_unit_test_uses_the_pipeline_run() -> None:
    users = [p.name for p in (TESTS / "unit").glob("test_*.py")
             if p.name != Path(__file__).name and "sample_run" in p.read_text()]
    assert users == [], f"these run the whole pipeline and belong in tests/e2e: {users}"


def test_test_file_names_are_unique_across_folders() -> None:
    """The folders are not packages, so pytest imports each test file by its basename: two files of
    one name (tests/unit/test_x.py and tests/e2e/test_x.py) stop `make test` at collection."""
    seen: dict[str, list[str]] = {}
    for p in TESTS.rglob("test_*.py"):
        seen.setdefault(p.name, []).append(str(p.relative_to(TESTS)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert clashes == {}, f"rename one of each: {clashes}"
