"""Benchmark inputs: real photos at fixed sizes, and perf_analyzer input-data files.

The photos are scikit-image's bundled samples (the dev environment has it), resized to
each benchmark size and JPEG-encoded at quality 90, i.e. what a client would upload.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket")


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (width, height)."""
    width, height = (int(part) for part in text.lower().split("x"))
    return width, height


def size_label(size: tuple[int, int]) -> str:
    """``640x480`` for (640, 480)."""
    return f"{size[0]}x{size[1]}"


def by_width(labels) -> list[str]:
    """Size labels (``640x480``) from the narrowest."""
    return sorted(labels, key=lambda label: parse_size(label)[0])


def photo_jpegs(size: tuple[int, int], count: int = len(SAMPLES)) -> list[bytes]:
    """``count`` of the sample photos resized to ``size``, as JPEG bytes (quality 90)."""
    from skimage import data

    jpegs = []
    for name in SAMPLES[:count]:
        image = Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    return jpegs


def write_photos(
    directory: Path, sizes: list[tuple[int, int]], count: int = len(SAMPLES)
) -> dict[str, list[Path]]:
    """Size label -> ``count`` JPEG files per size, written under ``directory``."""
    shutil.rmtree(directory, ignore_errors=True)
    written = {}
    for size in sizes:
        label = size_label(size)
        folder = directory / label
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, payload in enumerate(photo_jpegs(size, count)):
            path = folder / f"{SAMPLES[index]}.jpg"
            path.write_bytes(payload)
            paths.append(path)
        written[label] = paths
    return written


def tensor_entry(array: np.ndarray) -> dict:
    """perf_analyzer's binary form: base64 of the raw (C-order) tensor bytes, plus shape."""
    contiguous = np.ascontiguousarray(array)
    return {
        "b64": base64.b64encode(contiguous.tobytes()).decode("ascii"),
        "shape": list(contiguous.shape),
    }


def write_input_data(path: Path, requests: list[dict[str, np.ndarray]]) -> Path:
    """One perf_analyzer --input-data file; perf_analyzer cycles through the requests."""
    document = {
        "data": [
            {name: tensor_entry(array) for name, array in request.items()} for request in requests
        ]
    }
    path.write_text(json.dumps(document))
    return path
