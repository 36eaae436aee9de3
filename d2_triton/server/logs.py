"""The launcher's own messages: one line each on stderr, beside tritonserver's log."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    """A launcher message on stderr, prefixed so that it stands out from Triton's lines."""
    print(f"[d2_triton.server] {message}", file=sys.stderr, flush=True)
