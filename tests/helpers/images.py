"""Hand-made encoded images for decoder tests: odd formats and deliberately broken files."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header declares ``width`` x ``height`` RGB pixels.

    Its compressed data holds a single row; a decoder that trusts the header before checking
    limits would try to allocate width x height x 3 bytes (a "decompression bomb").
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 16))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", row)
        + _png_chunk(b"IEND", b"")
    )


def gradient_rgb(height: int = 120, width: int = 160) -> np.ndarray:
    """Smooth, asymmetric colour ramps: survive JPEG well and show any flip or rotation."""
    rows, cols = np.mgrid[0:height, 0:width]
    channels = [cols * 255 // width, rows * 255 // height, (rows + cols) * 255 // (height + width)]
    return np.stack(channels, -1).astype(np.uint8)
