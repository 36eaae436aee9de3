"""Real photographs for tests, from scikit-image's bundled sample data.

Each is written as the bytes a user would send: the original JPEG/PNG file where the sample
is one, else the sample re-encoded as JPEG at quality 90.  One is stored rotated with an EXIF
orientation tag, so the decoder must turn it upright.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data
from skimage.data import _fetchers

EXIF_ORIENTATION = 0x0112


def _jpeg(rgb: np.ndarray, quality: int = 90, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, exif=exif or Image.Exif())
    return buffer.getvalue()


def _sample_file(name: str) -> bytes:
    return Path(_fetchers._fetch(name)).read_bytes()


def exif_rotated_jpeg(rgb: np.ndarray) -> bytes:
    """Pixels stored rotated 90° clockwise; EXIF orientation 8 tells viewers to turn them back
    90° counter-clockwise, so a correct decoder returns the upright image."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 8
    stored = np.ascontiguousarray(np.rot90(rgb, k=-1))
    return _jpeg(stored, exif=exif)


def photo_bytes() -> dict[str, bytes]:
    """name -> encoded bytes; several sizes, aspect ratios and both formats."""
    return {
        "astronaut.jpg": _jpeg(data.astronaut()),  # 512 x 512
        "chelsea.jpg": _jpeg(data.chelsea()),  # 300 x 451
        "coffee.jpg": _jpeg(data.coffee()),  # 400 x 600
        "rocket.jpg": _sample_file("data/rocket.jpg"),  # 427 x 640, original JPEG
        "motorcycle.png": _sample_file("data/motorcycle_left.png"),  # original PNG
        "coffee-exif-rotated.jpg": exif_rotated_jpeg(data.coffee()),
    }


def write_photos(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, payload in photo_bytes().items():
        path = directory / name
        path.write_bytes(payload)
        paths[name] = path
    return paths
