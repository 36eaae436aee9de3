"""Long work shows progress: tqdm's bar on a terminal, plain lines in a log."""

from __future__ import annotations

import io

from export_tools import progress as module
from export_tools.progress import progress, status_line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_plain_lines_with_the_time_left(monkeypatch):
    clock = iter(float(t) for t in range(0, 1000, 20))  # 20 s per item
    monkeypatch.setattr(module.time, "monotonic", lambda: next(clock))
    log = io.StringIO()
    assert list(progress(range(5), "images", stream=log)) == [0, 1, 2, 3, 4]
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    # Every 30 s at most once, and at the end.
    assert lines == [
        "images: 2/5 after 00:40, about 01:00 left",
        "images: 4/5 after 01:20, about 00:20 left",
        "images: 5/5 after 01:40",
    ]


def test_a_terminal_gets_a_bar():
    terminal = Terminal()
    assert list(progress(iter("abc"), "letters", total=3, stream=terminal)) == ["a", "b", "c"]
    assert "\r" in terminal.getvalue() and "3/3" in terminal.getvalue()


def test_without_a_total_no_time_left_is_guessed():
    assert status_line(3, None, 65.0) == "3/? after 01:05"
