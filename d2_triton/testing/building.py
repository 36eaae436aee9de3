"""Cache entries built once, whichever process asks for them first.

The test suite makes exports in its own process and in its background work
(``tests/helpers/background.py``) at the same time; both ask for some of the same entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock


@contextmanager
def building(entry: Path) -> Iterator[None]:
    """Hold ``entry``'s lock (``<entry>.lock`` beside it) while checking for it and making it.

    A second process asking for the same entry waits until the first is done, then finds it
    made; the lock goes with a process that dies, so an entry left half-made (a ``.partial``)
    is made again by the next.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(entry.with_name(entry.name + ".lock")):
        yield
