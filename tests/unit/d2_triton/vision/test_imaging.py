"""Decoding and resizing agree with Detectron2's own code, and bad bytes are refused early."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from d2_triton.testing.corpus import encode, gradient_rgb, multi_frame, png_declaring
from d2_triton.vision.imaging import (
    DecodeLimits,
    InvalidImageError,
    decode_image,
    resize_shortest_edge,
    shortest_edge_resized_shape,
    to_model_layout,
)
from export_tools.detectron2_setup.shims import import_detectron2
from helpers.photos import photo_bytes

import_detectron2()
from detectron2.data import transforms as T  # noqa: E402, N812 (Detectron2 convention)
from detectron2.data.detection_utils import read_image  # noqa: E402


def _detectron2_read(payload: bytes, tmp_path) -> np.ndarray:
    path = tmp_path / "image"
    path.write_bytes(payload)
    return read_image(str(path), format="BGR")


@pytest.mark.parametrize("name", sorted(photo_bytes()))
def test_photos_decode_to_detectron2s_pixels(name, tmp_path):
    payload = photo_bytes()[name]
    np.testing.assert_array_equal(decode_image(payload), _detectron2_read(payload, tmp_path))


@pytest.mark.parametrize(
    ("mode", "image_format"),
    [("L", "JPEG"), ("L", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("LA", "PNG"), ("RGB", "PNG")],
)
def test_other_pixel_formats_decode_like_detectron2(mode, image_format, tmp_path):
    """Grey, alpha and palette images give read_image's pixels."""
    image = Image.fromarray(gradient_rgb()).convert(mode)
    payload = encode(image, image_format)
    decoded = decode_image(payload)
    assert decoded.shape == (120, 160, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, _detectron2_read(payload, tmp_path))


def test_cmyk_jpeg_decodes_like_detectron2(tmp_path):
    rgb = gradient_rgb()
    payload = encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    decoded = decode_image(payload)
    np.testing.assert_array_equal(decoded, _detectron2_read(payload, tmp_path))
    assert np.abs(decoded[..., ::-1].astype(int) - rgb).mean() < 4
    with pytest.raises(InvalidImageError, match="could not decode the JPEG"):
        decode_image(payload[: len(payload) // 2])


def test_sixteen_bit_png_is_scaled_to_eight_bits():
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    payload = encode(Image.fromarray(values), "PNG")
    decoded = decode_image(payload)
    np.testing.assert_array_equal(decoded[0, :, 0], [0, 1, 128, 255])


def test_exif_orientation_is_applied():
    rgb = gradient_rgb()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored pixels must be rotated 90° clockwise to be viewed upright
    stored = np.ascontiguousarray(np.rot90(rgb, k=1))
    decoded = decode_image(encode(Image.fromarray(stored), "JPEG", quality=98, exif=exif))
    assert decoded.shape == rgb.shape
    assert np.abs(decoded[..., ::-1].astype(int) - rgb).mean() < 3


def test_one_pixel_image_decodes():
    payload = encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG")
    np.testing.assert_array_equal(decode_image(payload), [[[30, 20, 10]]])


@pytest.mark.parametrize(
    ("image_format", "mode", "options"),
    [
        ("WEBP", "RGB", {"lossless": True}),
        ("WEBP", "RGB", {"quality": 80}),
        ("WEBP", "RGBA", {"lossless": True}),
        ("BMP", "RGB", {}),
        ("BMP", "L", {}),
        ("BMP", "P", {}),
        ("TIFF", "RGB", {}),
        ("TIFF", "L", {}),
        ("TIFF", "RGB", {"compression": "tiff_lzw"}),
        ("GIF", "RGB", {}),
        ("GIF", "L", {}),
    ],
    ids=lambda value: str(value) if not isinstance(value, dict) else "-".join(map(str, value)),
)
def test_every_format_detectron2_reads_decodes_to_its_pixels(image_format, mode, options, tmp_path):
    image = Image.fromarray(gradient_rgb()).convert(mode)
    payload = encode(image, image_format, **options)
    decoded = decode_image(payload)
    assert decoded.shape == (120, 160, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, _detectron2_read(payload, tmp_path))


@pytest.mark.parametrize("image_format", ["TIFF", "GIF"])
def test_the_first_page_or_frame_is_the_image(image_format, tmp_path):
    payload = multi_frame(Image.fromarray(gradient_rgb()), image_format)
    decoded = decode_image(payload)
    np.testing.assert_array_equal(decoded, _detectron2_read(payload, tmp_path))
    first = decode_image(encode(Image.fromarray(gradient_rgb()), image_format))
    np.testing.assert_array_equal(decoded, first)


@pytest.mark.parametrize("image_format", ["WEBP", "BMP", "TIFF", "GIF"])
def test_limits_apply_to_every_format_before_decoding(image_format):
    payload = encode(Image.new("RGB", (300, 200)), image_format)
    with pytest.raises(InvalidImageError, match="max_image_pixels"):
        decode_image(payload, DecodeLimits(max_pixels=300 * 200 - 1))
    with pytest.raises(InvalidImageError, match="max_image_bytes"):
        decode_image(payload, DecodeLimits(max_bytes=len(payload) - 1))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty request"),
        (np.random.default_rng(0).bytes(5000), "unsupported or unrecognised image format"),
        (b"Hello, I am not an image at all.\n" * 10, "unsupported or unrecognised"),
        (b"\x00\x00\x01\x00" + b"\x00" * 100, "send the raw bytes of a JPEG, PNG, WEBP"),
        (b"GIF89a" + b"\x00" * 100, "GIF"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "invalid JPEG header"),
        (png_declaring(50_000, 50_000), "pixels"),
        (png_declaring(0, 10), "PNG"),
    ],
    ids=[
        "empty",
        "random",
        "text",
        "ico",
        "corrupt-gif",
        "corrupt-jpeg-header",
        "bomb",
        "zero-width",
    ],
)
def test_bad_bytes_are_refused_with_a_clear_message(payload, message):
    with pytest.raises(InvalidImageError, match=message):
        decode_image(payload)


def test_truncated_jpeg_is_refused():
    payload = photo_bytes()["coffee.jpg"]
    with pytest.raises(InvalidImageError, match="truncated"):
        decode_image(payload[: len(payload) // 2])


def test_truncated_png_is_refused():
    payload = photo_bytes()["motorcycle.png"]
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        decode_image(payload[: len(payload) // 2])


def test_limits_are_configurable():
    payload = encode(Image.new("RGB", (100, 50)), "PNG")
    assert decode_image(payload, DecodeLimits(max_pixels=5000)).shape == (50, 100, 3)
    with pytest.raises(InvalidImageError, match="over the limit of 4999 pixels"):
        decode_image(payload, DecodeLimits(max_pixels=4999))
    with pytest.raises(InvalidImageError, match=f"over the limit of {len(payload) - 1} bytes"):
        decode_image(payload, DecodeLimits(max_bytes=len(payload) - 1))
    with pytest.raises(ValueError):
        DecodeLimits(max_bytes=0)


SIZES = [1, 2, 7, 299, 300, 451, 480, 512, 640, 799, 800, 1080, 1333, 1920, 4000]


@pytest.mark.parametrize(("short_edge", "max_size"), [(800, 1333), (640, 1000), (0, 1333)])
def test_resized_shape_is_detectron2s(short_edge, max_size):
    for height, width in itertools.product(SIZES, SIZES):
        expected = (
            (height, width)
            if short_edge == 0
            else T.ResizeShortestEdge.get_output_shape(height, width, short_edge, max_size)
        )
        assert shortest_edge_resized_shape(height, width, short_edge, max_size) == expected


@pytest.mark.parametrize(("height", "width"), [(480, 640), (512, 512), (300, 451), (1080, 1920)])
def test_resized_pixels_are_detectron2s(height, width):
    rng = np.random.default_rng(height * width)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    augmentation = T.ResizeShortestEdge([800, 800], 1333)
    expected = augmentation.get_transform(image).apply_image(image)
    np.testing.assert_array_equal(resize_shortest_edge(image, 800, 1333), expected)


def test_model_layout_follows_the_configs_channel_order():
    bgr = gradient_rgb()[..., ::-1]
    as_bgr = to_model_layout(bgr, "BGR")
    as_rgb = to_model_layout(bgr, "RGB")
    assert as_bgr.shape == (3, 120, 160) and as_bgr.flags.c_contiguous
    np.testing.assert_array_equal(as_bgr, bgr.transpose(2, 0, 1))
    np.testing.assert_array_equal(as_rgb, bgr[..., ::-1].transpose(2, 0, 1))
    with pytest.raises(ValueError):
        to_model_layout(bgr, "YUV")


def test_declared_size_is_checked_before_decoding():
    """Both guards answer from the header alone: ours (configurable) and PIL's hard one."""
    with pytest.raises(InvalidImageError, match="10000x10000 = 100000000 pixels, over the limit"):
        decode_image(png_declaring(10_000, 10_000))  # 300 MB if decoded
    with pytest.raises(InvalidImageError, match="too many pixels"):
        decode_image(png_declaring(50_000, 50_000), DecodeLimits(max_pixels=10**10))


def test_images_resized_to_nothing_are_refused():
    expected = r"too elongated: 4000x1 would be resized to 1333x0"
    with pytest.raises(InvalidImageError, match=expected):
        resize_shortest_edge(np.zeros((1, 4000, 3), np.uint8), 800, 1333)
    assert resize_shortest_edge(np.zeros((2, 4000, 3), np.uint8), 800, 1333).shape == (1, 1333, 3)


@pytest.mark.parametrize("signature", [b"\xff\xd8\xff", b"BM", b"GIF89a", b"II*\x00"])
def test_a_refusal_names_no_python_object(signature):
    with pytest.raises(InvalidImageError) as refused:
        decode_image(signature + b"not an image" * 4)
    message = str(refused.value)
    assert "header" in message and "object at 0x" not in message and "<" not in message
