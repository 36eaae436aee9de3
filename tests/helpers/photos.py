"""Real photographs for tests, from scikit-image's bundled sample data.

Each is written as the bytes a user would send: the original JPEG/PNG file where the sample
is one, else the sample re-encoded as JPEG at quality 90.  One is stored rotated with an EXIF
orientation tag, so the decoder must turn it upright.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data
from skimage.data import _fetchers

from d2_triton.testing.corpus import encode, exif_rotated_jpeg


def _jpeg(rgb: np.ndarray) -> bytes:
    return encode(Image.fromarray(rgb), "JPEG", quality=90)


def _sample_file(name: str) -> bytes:
    return Path(_fetchers._fetch(name)).read_bytes()


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
