"""Progress for long batch runs: done / total, rate and ETA on one line (a terminal) or log lines."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("mammobeam.progress")


class Progress:
    def __init__(self, enabled: bool = True, stream=None, min_interval_s: float = 2.0):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.min_interval_s = min_interval_s
        self.label, self.total, self.done, self.base = "", 0, 0, 0
        self.started = self.last = 0.0

    def start(self, label: str, total: int, done: int = 0) -> None:
        self.label, self.total, self.done, self.base = label, total, done, done
        self.started = self.last = time.monotonic()
        self._show(force=True)

    def advance(self, n: int) -> None:
        self.done += n
        self._show()

    def finish(self) -> None:
        self._show(force=True)
        if self.enabled and self.stream.isatty():
            self.stream.write("\n")

    def line(self) -> str:
        elapsed = max(1e-6, time.monotonic() - self.started)
        rate = (self.done - self.base) / elapsed
        remaining = self.total - self.done
        eta = f"{remaining / rate:.0f} s" if rate > 0 else "?"
        return f"{self.label}: {self.done}/{self.total} ({rate:.1f}/s, ETA {eta})"

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < self.min_interval_s and self.done < self.total:
            return
        self.last = now
        if self.stream.isatty():
            self.stream.write("\r" + self.line().ljust(60))
            self.stream.flush()
        else:
            log.info(self.line())
