"""Admission: a bounded number of detections in flight per pipeline, the rest refused at once.

Queueing more work than the detector can finish before clients give up only wastes it: with
100 uploads at once and no bound, half timed out (504) and the detector then ran dozens of
images for clients that were already gone.  So each pipeline admits at most its limit
(``MAX_IN_FLIGHT``, else ``names.ADMITTED_PER_INSTANCE`` per detector instance, as the
front in ``d2_triton.server.front`` does) and answers the rest 503 with ``Retry-After``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from d2_triton.gateway.errors import overloaded


class Admission:
    """Counts requests in flight per pipeline; all on one event loop, so no lock is needed."""

    def __init__(self) -> None:
        self.in_flight: Counter[str] = Counter()

    @asynccontextmanager
    async def admit(self, pipeline: str, limit: int) -> AsyncIterator[None]:
        """Hold one of ``pipeline``'s ``limit`` places; GatewayError 503 when none is free."""
        if self.in_flight[pipeline] >= limit:
            raise overloaded(f"model {pipeline!r} has {limit} requests in flight, its limit")
        self.in_flight[pipeline] += 1
        try:
            yield
        finally:
            self.in_flight[pipeline] -= 1
