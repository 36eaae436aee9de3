"""Request payloads for hardening: odd-but-valid images and deliberately bad bytes.

Every bad payload comes with the text its 400 error must contain; every odd-but-valid one
must be answered, not refused.  Shared by the tests, the load test and the soak script.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from d2_triton.testing.load import Case

EXIF_ORIENTATION = 0x0112


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    """``image`` encoded as ``image_format`` by Pillow."""
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


def photo(name: str = "coffee") -> np.ndarray:
    """A scikit-image sample photo as RGB."""
    from skimage import data

    return getattr(data, name)()


def exif_rotated_jpeg(rgb: np.ndarray) -> bytes:
    """A JPEG whose pixels are stored rotated 90° clockwise.

    EXIF orientation 8 tells viewers to turn them back 90° counter-clockwise, so a correct
    decoder returns the upright image.
    """
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 8
    stored = np.ascontiguousarray(np.rot90(rgb, k=-1))
    return encode(Image.fromarray(stored), "JPEG", quality=90, exif=exif)


def sixteen_bit_png(rgb: np.ndarray) -> bytes:
    """The photo's grey levels as a 16-bit PNG (x 257, so scaling back gives them exactly)."""
    grey = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


def odd_valid_images() -> list[Case]:
    """Valid images in less common encodings: each must get an answer, not an error."""
    rgb = photo()
    image = Image.fromarray(rgb)
    return [
        Case("png", encode(image, "PNG")),
        Case("greyscale-jpeg", encode(image.convert("L"), "JPEG", quality=90)),
        Case("cmyk-jpeg", encode(image.convert("CMYK"), "JPEG", quality=90)),
        Case("sixteen-bit-png", sixteen_bit_png(rgb)),
        Case("rgba-png", encode(image.convert("RGBA"), "PNG")),
        Case("exif-rotated-jpeg", exif_rotated_jpeg(rgb)),
        Case("one-pixel-png", encode(Image.new("RGB", (1, 1), (90, 120, 200)), "PNG")),
        Case("webp-lossless", encode(image, "WEBP", lossless=True)),
        Case("bmp", encode(image, "BMP")),
        Case("tiff-two-pages", multi_frame(image, "TIFF")),
        Case("gif-two-frames", multi_frame(image, "GIF")),
    ]


def multi_frame(image: Image.Image, image_format: str) -> bytes:
    """``image`` then its negative as a second page or frame: only the first counts."""
    negative = Image.fromarray(255 - np.asarray(image))
    return encode(image, image_format, save_all=True, append_images=[negative])


def bad_inputs(max_image_bytes: int | None = None) -> list[Case]:
    """Bytes that are not acceptable images, each with the text its error must contain."""
    jpeg = encode(Image.fromarray(photo()), "JPEG", quality=90)
    cases = [
        Case("empty", b"", "empty request"),
        Case("random-bytes", np.random.default_rng(0).bytes(4096), "unrecognised image format"),
        Case("text", b"This is a text file, not an image.\n" * 20, "unrecognised image format"),
        Case("ico", encode(Image.new("RGB", (16, 16)), "ICO"), "unrecognised image format"),
        Case("truncated-jpeg", jpeg[: len(jpeg) // 2], "truncated"),
        Case("corrupt-jpeg-header", jpeg[:4] + b"\x00" * 200 + jpeg[204:], "invalid JPEG header"),
        Case("zero-width-png", png_declaring(0, 480), "invalid PNG header"),
        Case("decompression-bomb", png_declaring(50_000, 50_000), "too many pixels"),
        Case("over-pixel-limit", png_declaring(10_000, 10_000), "max_image_pixels"),
        Case("too-elongated", encode(Image.new("RGB", (4000, 1)), "PNG"), "too elongated"),
    ]
    if max_image_bytes:
        oversized = b"\xff\xd8\xff\xe0" + bytes(max_image_bytes)
        cases.append(Case("over-byte-limit", oversized, "max_image_bytes"))
    return cases


def mixed_cases() -> list[Case]:
    """Photos, odd-but-valid images and bad payloads: the mix the load and soak runs send."""
    photos = [
        Case(f"photo-{name}", encode(Image.fromarray(photo(name)), "JPEG", quality=90))
        for name in ("astronaut", "chelsea", "coffee", "rocket")
    ]
    return photos + odd_valid_images() + bad_inputs()
