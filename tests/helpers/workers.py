"""Threads that keep working until told to stop: the load of the chaos and docker tests."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Workers:
    """``targets`` each in a daemon thread, from ``with`` until its end; they watch ``stop``.

    Leaving the ``with`` sets ``stop`` and joins them; one still running ``join_timeout`` later
    fails the test (a client that hangs is what it must never do).
    """

    def __init__(self, targets: list[Callable[[], None]], join_timeout: float):
        self.stop = threading.Event()
        self.join_timeout = join_timeout
        self.threads = [threading.Thread(target=target, daemon=True) for target in targets]

    def __enter__(self) -> Workers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=self.join_timeout)
        assert not any(thread.is_alive() for thread in self.threads), "a worker hangs"
