"""serving/log_limits.py: one line per interval and kind, the next line carrying the suppressed count."""
import logging

from serving.log_limits import RateLimitedLog


def test_one_line_per_interval_with_the_suppressed_count(caplog, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("serving.log_limits.time.monotonic", lambda: clock[0])
    limited = RateLimitedLog(logging.getLogger("t"), interval=10)
    caplog.set_level(logging.INFO, logger="t")
    written = [limited.log("accept", logging.WARNING, "accept failed: %s", "EMFILE") for _ in range(1000)]
    assert written.count(True) == 1 and len(caplog.records) == 1
    assert limited.log("reset", logging.INFO, "reset") is True  # another kind has its own budget
    clock[0] += 10
    assert limited.log("accept", logging.WARNING, "accept failed: %s", "EMFILE") is True
    assert caplog.records[-1].getMessage() == ("accept failed: EMFILE (999 more like this since the last such "
                                               "line, at most one line per 10 s)")
    assert len(caplog.records) == 3
