"""The gateway's masks at Detectron2's size: polygons that outline them, a rendered picture.

These two compare pixels of masks, so they ask the Mask R-CNN export as it is (short edge
800), through a gateway of their own, right after the serving tests left that server
running; the rest of the gateway's tests use the fast server (conftest).
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from d2_triton.vision.imaging import decode_image
from helpers.servers import GatewayProcess
from tests.integration.test_gateway import detected, post


@pytest.fixture(scope="module")
def gateway(mask_rcnn_server, tmp_path_factory):
    """The REST gateway in front of the Mask R-CNN server at Detectron2's size."""
    log = tmp_path_factory.mktemp("gateway-masks") / "gateway.log"
    with GatewayProcess(
        mask_rcnn_server.http_url, log, mask_rcnn_server.settings.admin_key
    ) as process:
        yield process


def outside_of(mask: np.ndarray) -> np.ndarray:
    """Background pixels connected to the image border (not in a hole of the mask)."""
    padded = np.ascontiguousarray(np.pad((~mask).astype(np.uint8), 1))  # RLE decodes F-order
    cv2.floodFill(padded, None, (0, 0), 2)
    return padded[1:-1, 1:-1] == 2


def without_specks(mask: np.ndarray, largest_speck: int = 3) -> np.ndarray:
    """The mask less its pieces of 1-3 pixels, which have no polygon of 3 points (COCO's and
    Detectron2's minimum) and are left out of the polygons."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] > largest_speck]
    return np.isin(labels, keep)


def test_polygons_outline_the_masks(gateway, photos):
    """Rasterised again, the polygons cover each mask (bar specks) and, beyond its holes
    (which COCO polygons cannot express), spill over its outline by only a few pixels."""
    payload = photos["coffee.jpg"].read_bytes()
    rle = detected(gateway, payload, max_detections=10)
    document = post(gateway, "/v1/detect", payload, max_detections=10, mask_format="polygon").json()
    height, width = rle.image_size
    compared = 0
    for index, detection in enumerate(document["detections"]):
        mask = rle.mask(index)
        drawn = np.zeros((height, width), np.uint8)
        for polygon in detection["mask"]["polygons"]:
            points = np.rint(np.array(polygon).reshape(-1, 2) - 0.5).astype(np.int32)
            cv2.fillPoly(drawn, [points], 1)
        drawn = drawn.astype(bool)
        solid = without_specks(mask)
        if solid.sum() < 100:  # a few pixels: all outline, ratios mean little
            continue
        assert (solid & drawn).sum() / solid.sum() > 0.99, index
        assert (drawn & outside_of(mask)).sum() / mask.sum() < 0.05, index
        compared += 1
    assert compared >= 3


def test_rendered_png_shows_the_detections_and_nothing_else(gateway, photos):
    payload = photos["rocket.jpg"].read_bytes()
    response = post(gateway, "/v1/detect/render", payload, max_detections=3)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    rendered = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    original = decode_image(payload)[..., ::-1]
    assert rendered.shape == original.shape
    changed = np.any(rendered != original, axis=-1)
    result = detected(gateway, payload, max_detections=3)
    touched = np.zeros_like(changed)
    masks_seen = 0
    for index, (x1, y1, x2, y2) in enumerate(np.rint(result.boxes).astype(int)):
        assert changed[y1:y2, x1:x2].mean() > 0.01, index
        edge = changed[max(y1 - 1, 0) : y1 + 2, x1 + 3 : x2 - 3]  # the box's top outline
        assert edge.any(axis=0).mean() > 0.9, index
        mask = result.mask(index)
        if mask.any():  # a small box can have an empty mask: nothing of it to draw
            masks_seen += 1
            assert changed[mask].mean() > 0.9, index  # the translucent mask
        touched[max(y1 - 20, 0) : y2 + 3, max(x1 - 3, 0) : max(x2, x1 + 160) + 3] = True
    assert masks_seen >= 1 and changed.any() and not changed[~touched].any()
