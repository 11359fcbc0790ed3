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
