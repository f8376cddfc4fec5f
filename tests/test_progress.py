"""Progress of long batch runs: done / total, rate and ETA."""

from __future__ import annotations

import io

from mammobeam.pipelines import progress as progress_module
from mammobeam.pipelines.progress import Progress


def test_line_shows_done_total_rate_and_eta(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    bar = Progress(stream=io.StringIO())
    bar.start("files", 1000, done=100)  # 100 already committed by an earlier run (resume)
    now[0] = 110.0
    bar.advance(200)
    assert bar.line() == "files: 300/1000 (20.0/s, ETA 35 s)"


def test_terminal_gets_one_rewritten_line():
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    out = Terminal()
    bar = Progress(stream=out, min_interval_s=0)
    bar.start("headers", 3)
    bar.advance(3)
    bar.finish()
    assert out.getvalue().count("\r") == 3 and out.getvalue().endswith("\n")
    assert "headers: 3/3" in out.getvalue()
