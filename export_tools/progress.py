"""Progress of long work: a bar with the time left on a terminal, plain lines in a log.

On a terminal, ``tqdm`` draws its bar (done, rate, time left).  Elsewhere (CI, a redirected
log) a bar's carriage returns would make one endless line, so a plain line is written every
``LOG_EVERY_S`` seconds and at the end, with the same figures.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG_EVERY_S = 30.0


def progress(
    items: Iterable[T], what: str, total: int | None = None, stream: TextIO | None = None
) -> Iterator[T]:
    """``items``, one by one, showing progress on ``stream`` (stderr by default).

    ``total`` defaults to ``len(items)`` when it has one; without it no time left is given.
    """
    stream = stream or sys.stderr
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    if stream.isatty():
        yield from tqdm(items, desc=what, total=total, file=stream, unit="item")
        return
    started = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= LOG_EVERY_S or done == total:
            stream.write(f"{what}: {status_line(done, total, now - started)}\n")
            stream.flush()
            last = now


def status_line(done: int, total: int | None, elapsed: float) -> str:
    """``3/10 after 00:42, about 01:38 left`` (tqdm's time format)."""
    line = f"{done}/{total if total is not None else '?'} after {tqdm.format_interval(elapsed)}"
    if total and 0 < done < total:
        line += f", about {tqdm.format_interval(elapsed / done * (total - done))} left"
    return line
