"""Segments agree with Detectron2's sem_seg_postprocess and panoptic combination."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from d2_triton import names
from d2_triton.serving.options import PostprocessOptions
from d2_triton.serving.steps import Segmentation, postprocess
from d2_triton.vision.detections import Detections, decode_rle
from d2_triton.vision.labels import LabelMap
from d2_triton.vision.segments import (
    PanopticSettings,
    panoptic_segments,
    semantic_map,
    semantic_segments,
)
from export_tools.detectron2_setup.shims import import_detectron2

import_detectron2()
from detectron2.layers.mask_ops import paste_masks_in_image  # noqa: E402
from detectron2.modeling.meta_arch.panoptic_fpn import (  # noqa: E402
    combine_semantic_and_instance_outputs,
)
from detectron2.modeling.postprocessing import sem_seg_postprocess  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

RESIZED = (203, 301)  # not a multiple of the stride: the crop matters
PADDED_LOGITS = (52, 76)  # the head's output on the padded image, at stride 4
ORIGINAL = (150, 222)
CLASSES = 19  # more than one chunk of classes


def detectron2_classes(logits: np.ndarray, stride: int = 4) -> np.ndarray:
    """Detectron2's own steps: the head's upsampling, sem_seg_postprocess, arg-max."""
    batch = torch.from_numpy(logits)[None]
    up = torch.nn.functional.interpolate(
        batch, scale_factor=stride, mode="bilinear", align_corners=False
    )
    return sem_seg_postprocess(up[0], RESIZED, *ORIGINAL).argmax(dim=0).numpy()


def random_logits(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 3, (CLASSES, *PADDED_LOGITS)).astype(np.float32)


def test_the_class_map_is_detectron2s_pixel_for_pixel():
    logits = random_logits()
    logits[3:5] = logits[4]  # tied classes: the lower one wins, as torch's argmax picks
    np.testing.assert_array_equal(
        semantic_map(logits, 4, RESIZED, ORIGINAL), detectron2_classes(logits)
    )


def test_semantic_segments_are_the_classes_present_in_order():
    classes = np.array([[3, 3, 0], [7, 3, 0]])
    segments = semantic_segments(classes)
    assert segments.classes.tolist() == [0, 3, 7]
    assert segments.areas.tolist() == [2, 3, 1]
    assert not segments.is_thing.any() and np.isnan(segments.scores).all()
    np.testing.assert_array_equal(segments.classes[segments.segment_map - 1], classes)


def overlapping_instances(seed: int = 0) -> Detections:
    """Instances in original pixels, some above the combination's 0.5, overlapping."""
    rng = np.random.default_rng(seed)
    count = 12
    x0, y0 = rng.uniform(0, 150, count), rng.uniform(0, 90, count)
    boxes = np.stack([x0, y0, x0 + rng.uniform(10, 80, count), y0 + rng.uniform(10, 60, count)], 1)
    scores = rng.uniform(0.3, 1.0, count).astype(np.float32)
    scores[5] = scores[6]  # a tie: the earlier instance goes first, as Detectron2's sort
    return Detections(
        boxes=boxes.astype(np.float32),
        scores=scores,
        classes=rng.integers(0, 5, count).astype(np.int32),
        mask_probs=rng.uniform(0, 1, (count, 28, 28)).astype(np.float32),
    )


def test_panoptic_segments_are_detectron2s_combination():
    detections = overlapping_instances()
    classes = detectron2_classes(random_logits(1))
    classes[:40] = 0  # "things" stuff: never a segment of its own
    settings = PanopticSettings(overlap_threshold=0.5, stuff_area=300, score_threshold=0.5)
    ours = panoptic_segments(detections, classes, settings)

    instances = Instances(ORIGINAL)
    instances.scores = torch.from_numpy(detections.scores)
    instances.pred_classes = torch.from_numpy(detections.classes.astype(np.int64))
    boxes = Boxes(torch.from_numpy(detections.boxes))
    probs = torch.from_numpy(detections.mask_probs)
    instances.pred_masks = paste_masks_in_image(probs, boxes, ORIGINAL, threshold=0.5)
    expected_map, info = combine_semantic_and_instance_outputs(
        instances, torch.from_numpy(classes), 0.5, 300, 0.5
    )
    assert sum(info_["isthing"] for info_ in info) >= 3  # things were placed, and overlapped
    np.testing.assert_array_equal(ours.segment_map, expected_map.numpy())
    assert ours.classes.tolist() == [segment["category_id"] for segment in info]
    assert ours.is_thing.tolist() == [segment["isthing"] for segment in info]
    things = [segment["score"] for segment in info if segment["isthing"]]
    np.testing.assert_allclose(ours.scores[ours.is_thing], things, rtol=1e-7)
    stuff_areas = [segment["area"] for segment in info if not segment["isthing"]]
    assert ours.areas[~ours.is_thing].tolist() == stuff_areas


@pytest.mark.parametrize("mask_format", ["rle", "dense", "none"])
def test_postprocess_returns_segments_in_the_asked_mask_format(mask_format):
    logits = random_logits(2)
    segmentation = Segmentation(
        "semantic", logits, LabelMap.from_names([f"stuff{i}" for i in range(CLASSES)])
    )
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0))
    outputs = postprocess(
        empty,
        RESIZED,
        ORIGINAL,
        PostprocessOptions(mask_format=mask_format),
        LabelMap.from_names([]),
        segmentation,
    )
    classes = detectron2_classes(logits)
    present = np.unique(classes)
    assert outputs[names.SEGMENT_CLASSES].tolist() == present.tolist()
    assert [label.decode() for label in outputs[names.SEGMENT_LABELS]] == [
        f"stuff{i}" for i in present
    ]
    assert (names.SEGMENTS_RLE in outputs) == (mask_format == "rle")
    assert (names.SEGMENT_MAP in outputs) == (mask_format == "dense")
    if mask_format == "rle":
        first = decode_rle(outputs[names.SEGMENTS_RLE][0], ORIGINAL)
        np.testing.assert_array_equal(first, classes == present[0])
    if mask_format == "dense":
        ids = outputs[names.SEGMENT_MAP]
        np.testing.assert_array_equal(outputs[names.SEGMENT_CLASSES][ids - 1], classes)
