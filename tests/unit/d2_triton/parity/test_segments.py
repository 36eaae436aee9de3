"""The segment parity rules on hand-made answers: exact equality, semantic ties, agreement."""

from __future__ import annotations

import numpy as np

from d2_triton.client.segment_results import SegmentsResult
from d2_triton.parity.detections import ParityFigures
from d2_triton.parity.prediction import Prediction
from d2_triton.parity.segments import compare_segments

SIZE = (10, 10)


def served_semantic(classes: np.ndarray) -> SegmentsResult:
    present, inverse = np.unique(classes, return_inverse=True)
    return SegmentsResult(
        image_size=SIZE,
        ids=np.arange(1, len(present) + 1, dtype=np.int32),
        classes=present.astype(np.int32),
        labels=[str(c) for c in present],
        is_thing=np.zeros(len(present), bool),
        scores=np.full(len(present), np.nan, np.float32),
        areas=np.bincount(inverse.ravel()),
        segment_map=(inverse.reshape(SIZE) + 1).astype(np.int32),
    )


def semantic_reference(logits: np.ndarray) -> Prediction:
    empty = np.zeros((0, 4), np.float32)
    return Prediction(empty, np.zeros(0), np.zeros(0), image_size=SIZE, sem_seg=logits)


def logits_with_a_near_tie(gap: float) -> np.ndarray:
    logits = np.zeros((3, *SIZE), np.float32)
    logits[1, :, :5] = 5.0
    logits[2, :, 5:] = 5.0
    logits[1, 0, 5] = 5.0 - gap  # class 2 leads class 1 here by ``gap``
    return logits


def compared(served, reference, staged: bool) -> ParityFigures:
    figures = ParityFigures()
    compare_segments(figures, served, reference, staged)
    return figures


def test_a_semantic_pixel_may_flip_only_at_a_tie_and_only_staged():
    classes = np.where(np.arange(10) < 5, 1, 2)[None].repeat(10, 0)
    flipped = classes.copy()
    flipped[0, 5] = 1
    tie = semantic_reference(logits_with_a_near_tie(1e-4))
    assert not compared(served_semantic(classes), tie, staged=False).problems
    staged = compared(served_semantic(flipped), tie, staged=True)
    assert not staged.problems and staged.semantic_ties == 1
    assert compared(served_semantic(flipped), tie, staged=False).problems
    clear = semantic_reference(logits_with_a_near_tie(0.5))
    assert compared(served_semantic(flipped), clear, staged=True).problems


def panoptic_reference() -> Prediction:
    ids = np.ones(SIZE, np.int32)
    ids[:, 5:] = 2
    info = [
        {"id": 1, "isthing": True, "score": 0.8, "category_id": 3, "instance_id": 0},
        {"id": 2, "isthing": False, "category_id": 7, "area": 50},
    ]
    empty = np.zeros((0, 4), np.float32)
    return Prediction(empty, np.zeros(0), np.zeros(0), image_size=SIZE, panoptic=(ids, info))


def served_panoptic(ids: np.ndarray, score: float = 0.8) -> SegmentsResult:
    return SegmentsResult(
        image_size=SIZE,
        ids=np.array([1, 2], np.int32),
        classes=np.array([3, 7], np.int32),
        labels=["car", "sky"],
        is_thing=np.array([True, False]),
        scores=np.array([score, np.nan], np.float32),
        areas=np.array([50, 50]),
        segment_map=ids,
    )


def test_panoptic_exact_is_pixel_for_pixel_and_staged_within_the_agreement():
    reference = panoptic_reference()
    same = reference.panoptic[0].copy()
    assert not compared(served_panoptic(same), reference, staged=False).problems
    assert compared(served_panoptic(same, score=0.7), reference, staged=False).problems
    one_off = same.copy()
    one_off[0, 4] = 2  # 1 % of the pixels
    assert compared(served_panoptic(one_off), reference, staged=False).problems
    figures = compared(served_panoptic(one_off), reference, staged=True)
    assert figures.problems and figures.min_segment_agreement == 0.99  # under 99.5 %
    assert compared(None, reference, staged=True).problems == ["no segments served"]
