"""Rate-limited logging for errors that repeat: at most one line per interval and kind.

An abusive or broken client can make the same error happen thousands of times a second (a server
at its file-descriptor limit failing every accept, clients resetting connections); one log line
each fills a disk (issue 28: 128,797 lines within seconds). Here the first occurrence of a kind is
logged at once, later ones within `interval` seconds are only counted, and the next line of that
kind says how many were suppressed, so the log keeps both the error and its rate.
"""
from __future__ import annotations

import logging
import threading
import time

DEFAULT_INTERVAL_SECONDS = 10.0


class RateLimitedLog:
    """`log(kind, level, msg, *args)` writes at most one line per `interval` seconds per `kind`."""

    def __init__(self, logger: logging.Logger, interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self.logger, self.interval = logger, interval
        self._last: dict[str, float] = {}      # kind -> time of its last written line
        self._suppressed: dict[str, int] = {}  # kind -> occurrences not written since then
        self._lock = threading.Lock()

    def allow(self, kind: str) -> int | None:
        """None when this occurrence is to be suppressed (and counts it); otherwise the number
        suppressed since the last line of this kind, which the caller's line should report."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return None
            self._last[kind] = now
            if len(self._last) > 1024:  # kinds come from a fixed set; bound it all the same
                self._last = {kind: now}
            return self._suppressed.pop(kind, 0)

    def log(self, kind: str, level: int, msg: str, *args: object) -> bool:
        """Log unless suppressed; True when a line was written."""
        suppressed = self.allow(kind)
        if suppressed is None:
            return False
        self.logger.log(level, msg + suffix(suppressed, self.interval), *args)
        return True


def suffix(suppressed: int, interval: float) -> str:
    """The count a rate-limited line carries; empty when nothing was suppressed."""
    if not suppressed:
        return ""
    return f" ({suppressed} more like this since the last such line, at most one line per {interval:g} s)"
