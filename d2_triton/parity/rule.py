"""Pairing two answers for one image, instance by instance, and the tolerances they share.

Two checks hold a detector to Detectron2's answer: the exporter's own (its staged detector
against the eager model on the sample image, ``export_tools.trace.files``) and the parity
tests (the served ensemble against ``DefaultPredictor`` on photos).  Both pair instances
here and use these tolerances, so "the same answer" means one thing.

Instances are paired, not zipped: several can share a score (random weights saturate many
at 1.0), so each reference instance is matched to an instance of the same class with the
closest box.  An instance may be left unpaired only at a cut: its score within
``CUT_TOLERANCE`` of the lowest score that could be kept (the score threshold, or top-k).
Or as a swapped tie (:func:`take_swapped_ties`): over a uniform region a class fires as
translated copies with one score; of two overlapping copies NMS keeps the first in score
order, which float rounding of equal scores decides, so each side may keep the other one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

BOX_TOLERANCE_PX = 0.5
SCORE_TOLERANCE = 1e-3
# Instances may appear or vanish only at a cut: scores this close to the lowest one kept.
CUT_TOLERANCE = 1e-3
# Staged semantic logits may differ from eager ones by float rounding: this share of the
# image's largest logit (the export's check, and the ties the semantic parity rule admits).
LOGITS_TOLERANCE = 1e-3
# Detectron2's test-time NMS threshold (ROI heads, RetinaNet): copies overlapping more than
# this suppress each other, so only one of them can be kept.
NMS_IOU = 0.5


class Instances(Protocol):
    """What pairing reads of an answer: N classes, N x 4 boxes (x1, y1, x2, y2), N scores."""

    classes: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


@dataclass
class Pairing:
    """Reference index -> paired index, and what neither side could pair."""

    pairs: dict[int, int] = field(default_factory=dict)
    unpaired_reference: list[int] = field(default_factory=list)
    unpaired_other: list[int] = field(default_factory=list)
    swapped_ties: dict[int, int] = field(default_factory=dict)


def box_error(a: np.ndarray, b: np.ndarray) -> float:
    """The largest coordinate difference between two boxes, in pixels."""
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def pair_instances(reference: Instances, other: Instances, *, within_tolerance: bool) -> Pairing:
    """Pair each reference instance with the unpaired one of its class with the closest box.

    ``within_tolerance``: a pair must also agree within ``BOX_TOLERANCE_PX`` and
    ``SCORE_TOLERANCE`` (float32 stages, where an instance at a cut may be missing on one
    side); without it every reference instance takes the closest box of its class, and the
    caller checks the tolerances (bit-exact exports).
    """
    pairing = Pairing()
    free = set(range(len(other.scores)))
    for index in range(len(reference.scores)):
        klass, box = int(reference.classes[index]), reference.boxes[index]
        candidates = [j for j in sorted(free) if int(other.classes[j]) == klass]
        if within_tolerance:
            score = float(reference.scores[index])
            candidates = [
                j
                for j in candidates
                if box_error(other.boxes[j], box) <= BOX_TOLERANCE_PX
                and abs(float(other.scores[j]) - score) <= SCORE_TOLERANCE
            ]
        if not candidates:
            pairing.unpaired_reference.append(index)
            continue
        best = min(candidates, key=lambda j: box_error(other.boxes[j], box))
        pairing.pairs[index] = best
        free.discard(best)
    pairing.unpaired_other = sorted(free)
    return pairing


def at_cut(score: float, cut: float) -> bool:
    """Whether an instance with ``score`` may be kept on one side and dropped on the other."""
    return abs(score - cut) <= CUT_TOLERANCE


def take_swapped_ties(pairing: Pairing, reference: Instances, other: Instances) -> int:
    """Pair what is left unpaired on both sides as swapped tied copies; returns how many.

    A reference instance and an instance of the other side, both unpaired, of one class,
    scores within ``SCORE_TOLERANCE`` and boxes overlapping by at least ``NMS_IOU`` (so NMS
    keeps only one of them): the same detection, at the other copy's place.  They move from
    the unpaired lists to ``swapped_ties``.
    """
    for index in list(pairing.unpaired_reference):
        klass, score = int(reference.classes[index]), float(reference.scores[index])
        matches = [
            j
            for j in pairing.unpaired_other
            if int(other.classes[j]) == klass
            and abs(float(other.scores[j]) - score) <= SCORE_TOLERANCE
            and box_iou(other.boxes[j], reference.boxes[index]) >= NMS_IOU
        ]
        if matches:
            best = min(matches, key=lambda j: abs(float(other.scores[j]) - score))
            pairing.swapped_ties[index] = best
            pairing.unpaired_reference.remove(index)
            pairing.unpaired_other.remove(best)
    return len(pairing.swapped_ties)
