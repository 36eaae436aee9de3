"""The parity rule for segments: a served semantic or panoptic answer against Detectron2's.

Exact exports (``--exact``): the served segment map is Detectron2's pixel for pixel, with the
same segments (id, class, thing or stuff, score).

Staged exports compute the logits and the instances in float32 on other kernels, so:

* semantic: a pixel may carry another class than Detectron2's only where Detectron2's logits
  for the two classes are a tie within the staged logits' tolerance
  (``d2_triton.parity.rule.LOGITS_TOLERANCE`` of the image's largest logit, the export's
  own check):
  ``semantic_ties``;
* panoptic: at least ``MIN_PANOPTIC_AGREEMENT`` of the pixels carry the same category (the
  same thing class, the same stuff class, or no segment) as Detectron2's.  Things follow
  instance masks and scores, whose staged rounding the instance rule admits (a flipped
  mask boundary, an instance at the cut, which the combination then places or not), and
  stuff follows the arg-max above.  ``min_segment_agreement`` reports the share.
"""

from __future__ import annotations

import numpy as np

from d2_triton.parity.rule import LOGITS_TOLERANCE

MIN_PANOPTIC_AGREEMENT = 0.995
# A stuff class's category is its class; a thing's is offset past every stuff class.
THING_OFFSET = 1 << 20


def compare_segments(figures, served, reference, staged: bool) -> None:
    """Compare ``served`` (a ``SegmentsResult``) with ``reference`` (a ``Prediction``)."""
    if served is None:
        figures.problems.append("no segments served")
        return
    ids = served.class_map()
    if ids is None:
        figures.problems.append("segments served without masks: ask for mask_format=rle")
        return
    figures.segments += len(served)
    if reference.panoptic is not None:
        _compare_panoptic(figures, served, ids, reference.panoptic, staged)
    else:
        _compare_semantic(figures, served, ids, reference.sem_seg, staged)


def _categories(ids: np.ndarray, classes, is_thing, segment_ids) -> np.ndarray:
    """Each pixel's category: -1 (no segment), a stuff class, or THING_OFFSET + thing class."""
    lookup = np.full(int(max(segment_ids, default=0)) + 1, -1, dtype=np.int64)
    for segment, klass, thing in zip(segment_ids, classes, is_thing, strict=True):
        lookup[int(segment)] = int(klass) + (THING_OFFSET if thing else 0)
    return lookup[ids]


def _compare_semantic(figures, served, ids, logits: np.ndarray, staged: bool) -> None:
    served_classes = _categories(ids, served.classes, served.is_thing, served.ids)
    expected = logits.argmax(axis=0)
    differ = served_classes != expected
    figures.min_segment_agreement = min(
        figures.min_segment_agreement or 1.0, 1.0 - float(differ.mean())
    )
    if not differ.any():
        return
    rows, cols = np.nonzero(differ)
    served_at = served_classes[rows, cols]
    if staged and served_at.min() >= 0 and served_at.max() < len(logits):
        gap = logits[expected[rows, cols], rows, cols] - logits[served_at, rows, cols]
        scale = max(1.0, float(np.abs(logits).max()))
        if np.all(gap <= LOGITS_TOLERANCE * scale):
            figures.semantic_ties += int(differ.sum())
            return
    figures.problems.append(f"semantic classes differ on {int(differ.sum())} pixels")


def _compare_panoptic(figures, served, ids, panoptic, staged: bool) -> None:
    segment_map, info = panoptic
    expected = _categories(
        segment_map,
        [segment["category_id"] for segment in info],
        [segment["isthing"] for segment in info],
        [segment["id"] for segment in info],
    )
    got = _categories(ids, served.classes, served.is_thing, served.ids)
    agreement = float((got == expected).mean())
    figures.min_segment_agreement = min(figures.min_segment_agreement or 1.0, agreement)
    if staged:
        if agreement < MIN_PANOPTIC_AGREEMENT:
            figures.problems.append(f"panoptic categories agree on {agreement:.4%} of pixels")
        return
    if len(served) != len(info):
        figures.problems.append(f"{len(served)} segments served, Detectron2: {len(info)}")
    if not np.array_equal(ids, segment_map):
        figures.problems.append(f"panoptic map differs on {int((ids != segment_map).sum())} px")
    for index, segment in enumerate(info):
        if index >= len(served) or _segment(served, index) != _reference_segment(segment):
            figures.problems.append(f"segment {segment['id']} differs")
            return


def _segment(served, index: int) -> tuple:
    score = float(served.scores[index])
    return (
        int(served.ids[index]),
        int(served.classes[index]),
        bool(served.is_thing[index]),
        None if np.isnan(score) else round(score, 6),
    )


def _reference_segment(segment: dict) -> tuple:
    score = segment.get("score")
    return (
        int(segment["id"]),
        int(segment["category_id"]),
        bool(segment["isthing"]),
        None if score is None else round(float(score), 6),
    )
