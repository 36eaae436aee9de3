"""The models' unit tests initialise each model.py in pytest's own process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.thread_pools import thread_pools_kept


@pytest.fixture(autouse=True)
def _thread_pools_kept() -> Iterator[None]:
    """Each test's model settings end with it (``thread_pools_kept`` says why)."""
    with thread_pools_kept():
        yield
