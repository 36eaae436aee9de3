"""Image decoding and Detectron2's test-time resize, as the `preprocess` model runs them.

Two things matter here and both are checked by tests against Detectron2 itself:

* Decoding must give the same pixels Detectron2's ``read_image(path, format="BGR")`` gives.
  OpenCV's ``IMREAD_COLOR`` does for JPEG and 8-bit PNG, including EXIF orientation, grey
  images (expanded to 3 channels) and alpha (dropped); CMYK JPEGs go through PIL, whose
  conversion OpenCV does not match exactly.  16-bit PNGs are scaled to 8 bits by OpenCV where
  PIL would clip them; scaling is the useful behaviour, so we keep it.  WEBP, BMP, TIFF (its
  first page) and GIF (its first frame) are decoded as ``read_image`` decodes them: PIL,
  EXIF orientation, ``convert("RGB")``.
* Resizing must be Detectron2's ``ResizeShortestEdge`` at test time: the same output-size
  arithmetic and PIL's bilinear filter on uint8 data (``ResizeTransform.apply_image``), which
  is *not* what ``cv2.resize`` computes.

Untrusted bytes are checked before any pixel is decoded: size in bytes, a known format, and
the dimensions declared in the header (so a 50000x50000 "decompression bomb" is refused
without allocating it).
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

from d2_triton.errors import InvalidArgumentError, InvalidRequestError
from d2_triton.model_config import DecodeLimits

JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The formats accepted: the container's name -> the signatures its files start with.  PIL
# names the same formats in upper case.  JPEG and PNG are decoded by OpenCV, the rest by PIL.
SIGNATURES = {
    "jpeg": (JPEG_SIGNATURE,),
    "png": (PNG_SIGNATURE,),
    "webp": (b"RIFF",),  # and "WEBP" at offset 8
    "bmp": (b"BM",),
    "tiff": (b"II*\x00", b"MM\x00*"),
    "gif": (b"GIF87a", b"GIF89a"),
}
DECODED_BY_PIL = ("webp", "bmp", "tiff", "gif")
ACCEPTED = "JPEG, PNG, WEBP, BMP, TIFF (first page) or GIF (first frame)"
JPEG_END_OF_IMAGE = b"\xff\xd9"
# A Python object's default repr, as decoders put it in their messages.
OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")

# Detectron2's resize turns very elongated images into empty ones (4000x1 -> 1333x0), which
# it then fails on; anything of at least one pixel runs (the model pads to its stride).
MIN_RESIZED_SIDE = 1
CHANNEL_ORDERS = ("BGR", "RGB")
# The `preprocess` config parameters holding the limits; errors name them, so a user knows
# which setting to change.
BYTE_LIMIT_PARAMETER = "max_image_bytes"
PIXEL_LIMIT_PARAMETER = "max_image_pixels"


class InvalidImageError(InvalidRequestError):
    """The request's bytes are not an image this server accepts; the message says why."""


def sniff_format(data: bytes) -> str:
    """Name the container format from its signature; refuse anything else early."""
    for name, signatures in SIGNATURES.items():
        if data.startswith(signatures) and (name != "webp" or data[8:12] == b"WEBP"):
            return name
    preview = data[:8].hex(" ")
    raise InvalidImageError(
        f"unsupported or unrecognised image format (first bytes: {preview}); "
        f"send the raw bytes of a {ACCEPTED} file"
    )


@dataclass(frozen=True)
class Header:
    """What an image's header declares, read before any pixel is decoded."""

    width: int
    height: int
    mode: str  # PIL's name for the pixel format: "RGB", "L", "CMYK", "I;16", ...


def complaint(error: Exception) -> str:
    """A decoder's message for the client: without Python object reprs, never empty.

    PIL names the stream it read (``cannot identify image file <_io.BytesIO object at
    0x7f...>``), which says nothing to the client and shows a server address.
    """
    text = OBJECT_REPR.sub("", str(error)).strip().rstrip(":")
    return text or type(error).__name__


def read_header(data: bytes, image_format: str) -> Header:
    """Size and pixel format as declared in the header, without decoding pixels.

    PIL parses only the header here.  Its own decompression-bomb guard is silenced because
    the caller applies the configured pixel limit with a clearer message.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[image_format.upper()]) as header:
                (width, height), mode = header.size, header.mode
    except Image.DecompressionBombError as error:
        raise InvalidImageError(f"image declares too many pixels: {complaint(error)}") from None
    except Exception as error:  # PIL raises many types for malformed headers
        raise InvalidImageError(
            f"invalid {image_format.upper()} header: {complaint(error)}"
        ) from None
    if width <= 0 or height <= 0:
        raise InvalidImageError(f"image header declares an empty image ({width}x{height})")
    return Header(width, height, mode)


def decode_image(data: bytes, limits: DecodeLimits | None = None) -> np.ndarray:
    """Decode image bytes to an HxWx3 uint8 BGR array with EXIF orientation applied.

    Raises InvalidImageError with a user-facing message for anything that is not a
    decodable image within ``limits``.
    """
    limits = limits or DecodeLimits()
    if len(data) == 0:
        raise InvalidImageError(f"empty request: expected the raw bytes of a {ACCEPTED} image")
    if len(data) > limits.max_bytes:
        raise InvalidImageError(
            f"image is {len(data)} bytes, over the limit of {limits.max_bytes} bytes "
            f"(model parameter {BYTE_LIMIT_PARAMETER})"
        )
    image_format = sniff_format(data)
    header = read_header(data, image_format)
    width, height = header.width, header.height
    if width * height > limits.max_pixels:
        raise InvalidImageError(
            f"image declares {width}x{height} = {width * height} pixels, over the limit of "
            f"{limits.max_pixels} pixels (model parameter {PIXEL_LIMIT_PARAMETER})"
        )
    if header.mode == "CMYK" or image_format in DECODED_BY_PIL:
        return _decode_with_pil(data, image_format)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidImageError(_decode_failure_message(data, image_format))
    return image


def _decode_with_pil(data: bytes, image_format: str) -> np.ndarray:
    """Decode through PIL exactly as Detectron2's ``read_image`` does (first frame or page).

    For CMYK JPEGs too: OpenCV's CMYK conversion rounds differently (off by one level here
    and there), and a detector can notice.
    """
    try:
        with Image.open(io.BytesIO(data), formats=[image_format.upper()]) as image:
            rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except Exception as error:
        raise InvalidImageError(
            f"could not decode the {image_format.upper()}: {error or type(error).__name__}"
        ) from None
    return np.ascontiguousarray(rgb[..., ::-1])


def _decode_failure_message(data: bytes, image_format: str) -> str:
    if image_format == "jpeg" and JPEG_END_OF_IMAGE not in data[-64:]:
        return "could not decode the JPEG: it is truncated (no end-of-image marker)"
    return f"could not decode the {image_format.upper()}: the data is corrupt or truncated"


def shortest_edge_resized_shape(
    height: int, width: int, short_edge: int, max_size: int
) -> tuple[int, int]:
    """Detectron2's ``ResizeShortestEdge.get_output_shape``: (new_height, new_width).

    The float arithmetic and the final ``int(x + 0.5)`` rounding are kept as Detectron2 has
    them, because a one-pixel difference in the resized size changes every box.  A
    ``short_edge`` of 0 means "do not resize", as in Detectron2.
    """
    if short_edge == 0:
        return height, width
    size = short_edge * 1.0
    scale = size / min(height, width)
    if height < width:
        new_height, new_width = size, scale * width
    else:
        new_height, new_width = scale * height, size
    if max(new_height, new_width) > max_size:
        scale = max_size * 1.0 / max(new_height, new_width)
        new_height = new_height * scale
        new_width = new_width * scale
    return int(new_height + 0.5), int(new_width + 0.5)


def resize_shortest_edge(image: np.ndarray, short_edge: int, max_size: int) -> np.ndarray:
    """Resize an HxWxC uint8 image the way Detectron2's test-time augmentation does."""
    height, width = image.shape[:2]
    new_height, new_width = shortest_edge_resized_shape(height, width, short_edge, max_size)
    if min(new_height, new_width) < MIN_RESIZED_SIDE:
        raise InvalidImageError(
            f"image is too elongated: {width}x{height} would be resized to "
            f"{new_width}x{new_height} (short edge {short_edge}, max size {max_size}), an "
            "empty image"
        )
    if (new_height, new_width) == (height, width):
        return image  # PIL would return an identical copy
    resized = Image.fromarray(image).resize((new_width, new_height), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def to_model_layout(image_bgr: np.ndarray, channel_order: str) -> np.ndarray:
    """HxWx3 BGR -> contiguous 3xHxW in the model's channel order (cfg.INPUT.FORMAT)."""
    if channel_order not in CHANNEL_ORDERS:
        raise InvalidArgumentError(
            f"channel order must be one of {CHANNEL_ORDERS}, got {channel_order!r}"
        )
    chw = image_bgr.transpose(2, 0, 1)
    if channel_order == "RGB":
        chw = chw[::-1]
    return np.ascontiguousarray(chw)
