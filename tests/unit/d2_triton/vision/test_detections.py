"""Post-processing agrees with Detectron2's detector_postprocess and mask pasting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from d2_triton.vision.detections import (
    Detections,
    compress_rle_counts,
    decode_rle,
    encode_masks_rle,
    paste_mask,
    paste_masks_dense,
    region_to_rle_counts,
    rescale_to_original,
)
from export_tools.detectron2_setup.shims import import_detectron2

import_detectron2()
from detectron2.layers.mask_ops import _do_paste_mask, paste_masks_in_image  # noqa: E402
from detectron2.modeling.postprocessing import detector_postprocess  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

RESIZED = (800, 1067)
ORIGINAL = (480, 640)


def random_detections(count: int, seed: int = 0, with_keypoints: bool = False) -> Detections:
    """Boxes partly outside the image (so clipping and empty-box removal are exercised)."""
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-50, RESIZED[1], count)
    y0 = rng.uniform(-50, RESIZED[0], count)
    boxes = np.stack(
        [x0, y0, x0 + rng.uniform(0.5, 400, count), y0 + rng.uniform(0.5, 400, count)], 1
    ).astype(np.float32)
    boxes[: count // 10] = [-100, 10, -10, 60]  # wholly left of the image: empty after clipping
    logits = rng.normal(0, 4, (count, 28, 28)).astype(np.float32)
    return Detections(
        boxes=boxes,
        scores=rng.uniform(0, 1, count).astype(np.float32),
        classes=rng.integers(0, 80, count),
        mask_probs=1 / (1 + np.exp(-logits)),
        carried={"keypoints": rng.uniform(0, 800, (count, 17, 3)).astype(np.float32)}
        if with_keypoints
        else {},
    )


def detectron2_postprocess(raw: Detections) -> Instances:
    instances = Instances(RESIZED)
    instances.pred_boxes = Boxes(torch.from_numpy(raw.boxes.copy()))
    instances.scores = torch.from_numpy(raw.scores)
    instances.pred_classes = torch.from_numpy(raw.classes)
    instances.pred_masks = torch.from_numpy(raw.mask_probs[:, None].copy())
    if "keypoints" in raw.carried:
        instances.pred_keypoints = torch.from_numpy(raw.carried["keypoints"].copy())
    return detector_postprocess(instances, *ORIGINAL)


def test_rescaling_equals_detector_postprocess():
    raw = random_detections(300, with_keypoints=True)
    ours = rescale_to_original(raw, RESIZED, ORIGINAL)
    theirs = detectron2_postprocess(raw)
    assert 0 < len(ours) < 300  # some boxes fell outside and were dropped
    np.testing.assert_array_equal(ours.boxes, theirs.pred_boxes.tensor.numpy())
    np.testing.assert_array_equal(ours.scores, theirs.scores.numpy())
    np.testing.assert_array_equal(ours.classes, theirs.pred_classes.numpy())
    np.testing.assert_array_equal(ours.carried["keypoints"], theirs.pred_keypoints.numpy())
    assert ours.classes.dtype == np.int32


def test_pasted_masks_equal_detectron2s():
    raw = random_detections(150, seed=1)
    ours = rescale_to_original(raw, RESIZED, ORIGINAL)
    theirs = detectron2_postprocess(raw).pred_masks.numpy()
    dense = paste_masks_dense(ours, ORIGINAL).astype(bool)
    differing = (dense != theirs).sum()
    # Equal up to float32 rounding: only pixels within ~1e-7 of the 0.5 threshold may flip.
    assert differing <= 2, f"{differing} pixels differ"
    assert dense.sum() > 10_000


def test_mask_values_match_grid_sample_to_float_rounding():
    rng = np.random.default_rng(2)
    for _ in range(50):
        x0, y0 = rng.uniform(-5, 600), rng.uniform(-5, 400)
        box = np.array([x0, y0, x0 + rng.uniform(1, 300), y0 + rng.uniform(1, 300)], np.float32)
        probs = rng.uniform(0, 1, (28, 28)).astype(np.float32)
        soft, (y_slice, x_slice) = _do_paste_mask(
            torch.from_numpy(probs)[None, None], torch.from_numpy(box)[None], *ORIGINAL
        )
        region, (left, top, right, bottom) = paste_mask(probs, box, ORIGINAL)
        assert (top, bottom, left, right) == (
            y_slice.start,
            y_slice.stop,
            x_slice.start,
            x_slice.stop,
        )
        np.testing.assert_array_equal(region, soft[0].numpy() >= 0.5)


def test_detectron2_binary_paste_matches_on_confident_masks():
    raw = random_detections(40, seed=3)
    raw.mask_probs = (raw.mask_probs > 0.5).astype(np.float32)  # 0/1, nothing near 0.5
    ours = rescale_to_original(raw, RESIZED, ORIGINAL)
    theirs = paste_masks_in_image(
        torch.from_numpy(ours.mask_probs), torch.from_numpy(ours.boxes), ORIGINAL
    )
    np.testing.assert_array_equal(paste_masks_dense(ours, ORIGINAL).astype(bool), theirs.numpy())


@pytest.mark.parametrize(
    "bounds",
    [(0, 0, 640, 480), (0, 0, 1, 1), (639, 479, 640, 480), (10, 0, 30, 480), (5, 7, 9, 9)],
)
def test_region_rle_equals_pycocotools_encode(bounds):
    left, top, right, bottom = bounds
    rng = np.random.default_rng(sum(bounds))
    region = rng.random((bottom - top, right - left)) > 0.5
    region[0, 0] = True  # a run of ones at the region's first pixel
    full = np.zeros(ORIGINAL, dtype=np.uint8)
    full[top:bottom, left:right] = region
    expected = coco_mask.encode(np.asfortranarray(full))["counts"]
    counts = region_to_rle_counts(region, bounds, ORIGINAL)
    assert compress_rle_counts(counts, ORIGINAL) == expected
    np.testing.assert_array_equal(decode_rle(expected, ORIGINAL), full.astype(bool))


def test_empty_and_full_masks_encode():
    for value in (False, True):
        region = np.full((480, 640), value)
        counts = region_to_rle_counts(region, (0, 0, 640, 480), ORIGINAL)
        expected = coco_mask.encode(np.asfortranarray(region.astype(np.uint8)))["counts"]
        assert compress_rle_counts(counts, ORIGINAL) == expected


def test_rle_and_dense_formats_hold_the_same_masks():
    ours = rescale_to_original(random_detections(30, seed=4), RESIZED, ORIGINAL)
    dense = paste_masks_dense(ours, ORIGINAL)
    rle = encode_masks_rle(ours, ORIGINAL)
    assert len(rle) == len(ours) == len(dense)
    for counts, mask in zip(rle, dense, strict=True):
        np.testing.assert_array_equal(decode_rle(counts, ORIGINAL), mask.astype(bool))


def test_no_detections():
    empty = Detections(
        boxes=np.zeros((0, 4), np.float32),
        scores=np.zeros(0, np.float32),
        classes=np.zeros(0, np.int64),
        mask_probs=np.zeros((0, 28, 28), np.float32),
    )
    rescaled = rescale_to_original(empty, RESIZED, ORIGINAL)
    assert len(rescaled) == 0
    assert paste_masks_dense(rescaled, ORIGINAL).shape == (0, *ORIGINAL)
    assert encode_masks_rle(rescaled, ORIGINAL) == []
