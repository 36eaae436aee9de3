"""Draw detections on their image: translucent masks, boxes, "label score" tags, keypoints.

Used by the REST gateway's ``/v1/detect/render`` and the CLI's ``--render``.  The image is
decoded exactly as ``preprocess`` decodes it (EXIF orientation applied), so boxes and masks,
which are in that frame, land where they belong.  Pixels away from every detection and its
tag are left untouched.

A semantic or panoptic answer is drawn as its segments instead, as Detectron2's
``Visualizer.draw_panoptic_seg`` draws them: each segment filled, stuff and things alike,
with its label (and a thing's score) at the segment's middle; the instance list is not
drawn over them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from d2_triton.client.results import DetectionResult
from d2_triton.client.segment_results import SegmentsResult
from d2_triton.errors import InvalidArgumentError
from d2_triton.model_config import DecodeLimits
from d2_triton.vision.imaging import decode_image

MASK_OPACITY = 0.45
BOX_WIDTH = 2
KEYPOINT_RADIUS = 2
# Twelve well-separated colours (RGB); class ``c`` gets ``PALETTE[c % 12]``.
PALETTE_HEX = "e6194b 3cb44b ffe119 0082c8 f58230 911eb4 46f0f0 f032e6 d2f53c fabed4 008080 aa6e28"
PALETTE = tuple(ImageColor.getrgb(f"#{code}") for code in PALETTE_HEX.split())


def colour_of(class_id: int) -> tuple[int, int, int]:
    """The drawing colour (RGB) of a class, the same on every picture."""
    return PALETTE[int(class_id) % len(PALETTE)]


def _tag_colour(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black text on light colours, white on dark ones."""
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def draw_detections(image_rgb: np.ndarray, result: DetectionResult) -> Image.Image:
    """``image_rgb`` (H x W x 3 uint8, the frame the result refers to) with ``result`` drawn."""
    if tuple(image_rgb.shape[:2]) != tuple(result.image_size):
        raise InvalidArgumentError(
            f"image is {image_rgb.shape[1]}x{image_rgb.shape[0]} but the detections are for "
            f"{result.image_size[1]}x{result.image_size[0]}"
        )
    if result.segments is not None:
        return draw_segments(image_rgb, result.segments)
    # Lowest score first, so the most confident detection ends up on top.
    order = np.argsort(result.scores, kind="stable")
    canvas = image_rgb.astype(np.float32)
    for index in order:
        mask = result.mask(int(index))
        if mask is not None and mask.any():
            colour = np.array(colour_of(result.classes[index]), dtype=np.float32)
            canvas[mask] = canvas[mask] * (1 - MASK_OPACITY) + colour * MASK_OPACITY
    image = Image.fromarray(np.rint(canvas).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for index in order:
        colour = colour_of(result.classes[index])
        x1, y1, x2, y2 = (float(v) for v in result.boxes[index])
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=BOX_WIDTH)
        if result.keypoints is not None:
            for x, y, _ in result.keypoints[index]:
                r = KEYPOINT_RADIUS
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        tag = f"{result.labels[index]} {float(result.scores[index]):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        tag_height = bottom - top + 2
        tag_top = y1 - tag_height if y1 >= tag_height else y1  # above the box if it fits
        draw.rectangle((x1, tag_top, x1 + right - left + 4, tag_top + tag_height), fill=colour)
        draw.text((x1 + 2, tag_top + 1 - top), tag, fill=_tag_colour(colour), font=font)
    return image


def segment_colour(segments: SegmentsResult, index: int) -> tuple[int, int, int]:
    """A thing's colour is its class's; stuff classes take the palette from its middle."""
    offset = 0 if segments.is_thing[index] else len(PALETTE) // 2
    return colour_of(int(segments.classes[index]) + offset)


def draw_segments(image_rgb: np.ndarray, segments: SegmentsResult) -> Image.Image:
    """``image_rgb`` with each segment filled and labelled (see the module docstring)."""
    canvas = image_rgb.astype(np.float32)
    masks = [segments.mask(index) for index in range(len(segments))]
    if any(mask is None for mask in masks):
        raise InvalidArgumentError("segments without masks cannot be drawn: ask for masks")
    for index, mask in enumerate(masks):
        colour = np.array(segment_colour(segments, index), dtype=np.float32)
        canvas[mask] = canvas[mask] * (1 - MASK_OPACITY) + colour * MASK_OPACITY
    image = Image.fromarray(np.rint(canvas).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for index, mask in enumerate(masks):
        rows, cols = np.nonzero(mask)
        if not rows.size:
            continue
        tag = segments.labels[index]
        if segments.is_thing[index]:
            tag += f" {float(segments.scores[index]):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        x = float(np.median(cols)) - (right - left) / 2
        y = float(np.median(rows)) - (bottom - top) / 2
        colour = segment_colour(segments, index)
        draw.rectangle((x - 2, y - 1, x + right - left + 2, y + bottom - top + 1), fill=colour)
        draw.text((x, y - top), tag, fill=_tag_colour(colour), font=font)
    return image


def render_png(
    image_bytes: bytes, result: DetectionResult, limits: DecodeLimits | None = None
) -> bytes:
    """The encoded image with ``result`` drawn on it, as PNG bytes."""
    image_rgb = decode_image(image_bytes, limits)[..., ::-1]
    buffer = io.BytesIO()
    draw_detections(np.ascontiguousarray(image_rgb), result).save(buffer, "PNG")
    return buffer.getvalue()
