"""`fmnist run --watch` / `--if-new-span` decide from the data and the span store when to run
(pipeline/watch.py); the loop is bounded. The pipeline itself is replaced by a counter here --
what a run does is tests/test_spans_e2e.py's subject."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline import watch
from pipeline.config import load_config


def _config(tmp_path: Path):
    return load_config("sample-spans", overrides={"data_root": str(tmp_path / "data"),
                                                  "output_root": str(tmp_path / "out")})


def _store(config, span: int) -> None:
    d = Path(config.span_store_dir) / f"span-{span}"
    d.mkdir(parents=True)
    (d / "span.json").write_text(json.dumps({"span": span}))


def test_a_span_is_pending_until_the_store_has_it(tmp_path):
    config = _config(tmp_path)
    assert watch.pending_span(config) is None                    # no data directory yet
    (tmp_path / "data" / "span-1").mkdir(parents=True)
    (tmp_path / "data" / "holdout").mkdir()
    assert watch.pending_span(config) == 1
    _store(config, 1)
    assert watch.pending_span(config) is None
    (tmp_path / "data" / "span-10").mkdir()
    (Path(config.span_store_dir) / "span-10").mkdir()             # interrupted copy: no span.json
    assert watch.pending_span(config) == 10                       # numeric order, incomplete = not stored
    assert watch.stored_spans(config.span_store_dir) == [1]


def test_watch_runs_once_per_new_span_and_stops_after_its_polls(tmp_path):
    config = _config(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    ran, slept = [], []

    def run() -> int:
        newest = watch.newest_span(str(data))
        ran.append(newest)
        if newest == 1:
            _store(config, 1)                   # span 1 accepted
        return 0 if newest == 1 else 2           # span 2 refused (e.g. drift): never stored

    def sleep(seconds: float) -> None:           # time passes; spans arrive between polls
        slept.append(seconds)
        if len(slept) == 1:
            (data / "span-1").mkdir()
        if len(slept) == 3:
            (data / "span-2").mkdir()

    status = watch.watch(config, run, interval=5, max_polls=8, max_runs=10, sleep=sleep)
    assert ran == [1, 2]                          # the refused span 2 is not run again on every poll
    # 8 polls: the 2 that ran look again at once, the last does not wait.
    assert status == 2 and len(slept) == 8 - 2 - 1 and set(slept) == {5}


def test_watch_stops_after_max_runs(tmp_path):
    config = _config(tmp_path)
    (tmp_path / "data" / "span-1").mkdir(parents=True)
    ran = []
    assert watch.watch(config, lambda: ran.append(1) or 0, interval=0, max_polls=100, max_runs=1,
                       sleep=lambda s: None) == 0
    assert ran == [1]


def test_span_directories_are_parsed_by_one_rule(tmp_path):
    """span-<N> with 1..18 ASCII digits is a span; anything else (and a file of that name) is not."""
    from schema.contract import span_number

    assert [span_number(n) for n in ("span-1", "span-10/", "span-007", "span-" + "9" * 18)] == [1, 10, 7, 10**18 - 1]
    not_spans = ("span-", "span-x", "span--1", "span-" + "9" * 19, "span-\u0661", "holdout", "xspan-1")
    assert [span_number(n) for n in not_spans] == [None] * len(not_spans)
    (tmp_path / "span-2").mkdir()
    (tmp_path / "span-3").write_text("a file, not a span")
    (tmp_path / "holdout").mkdir()
    assert watch.span_dirs(str(tmp_path)) == {2: str(tmp_path / "span-2")}
    assert watch.newest_span(str(tmp_path)) == 2
