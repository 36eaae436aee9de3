"""How a result's values are read from Triton and written as JSON, for detections and segments.

Floats are written as the shortest decimal that reads back to the same float32 (``0.9``, not
``0.8999999761581421``): readable, and exact for anyone who parses them into float32 again.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def exact_float(value: Any) -> float:
    """The shortest decimal that round-trips to the same float32, as a Python float."""
    return float(str(np.float32(value)))


def text(value: Any) -> str:
    """A Triton BYTES element (UTF-8 bytes) or a string, as a string."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
