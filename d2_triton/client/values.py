"""How a result's values are read from Triton and written as JSON, for detections and segments.

Floats are written as the shortest decimal that reads back to the same float32 (``0.9``, not
``0.8999999761581421``): readable, and exact for anyone who parses them into float32 again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def exact_float(value: Any) -> float:
    """The shortest decimal that round-trips to the same float32, as a Python float."""
    return float(str(np.float32(value)))


def text(value: Any) -> str:
    """A Triton BYTES element (UTF-8 bytes) or a string, as a string."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def json_mask(
    mask_format: str,
    rle: bytes | None,
    mask: Callable[[], np.ndarray],
    dense: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """One mask's JSON fields, for detections and segments alike.

    ``polygons`` traced from ``mask()`` when ``mask_format`` asks for them, else the ``counts``
    of its RLE if the answer carried one, else ``dense()``: what the caller makes of the mask.
    """
    if mask_format == "polygon":
        from d2_triton.vision.detections import mask_to_polygons

        return {"polygons": mask_to_polygons(mask())}
    if rle is not None:
        return {"counts": rle.decode("ascii")}
    return dense()
