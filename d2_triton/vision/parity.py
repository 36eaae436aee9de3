"""Pairing two answers for one image, instance by instance, and the tolerances they share.

Two checks hold a detector to Detectron2's answer: the exporter's own (its staged detector
against the eager model on the sample image, ``export_tools.trace.files``) and the parity
tests (the served ensemble against ``DefaultPredictor`` on photos).  Both pair instances
here and use these tolerances, so "the same answer" means one thing.

Instances are paired, not zipped: several can share a score (random weights saturate many
at 1.0), so each reference instance is matched to an instance of the same class with the
closest box.  An instance may be left unpaired only at a cut: its score within
``CUT_TOLERANCE`` of the lowest score that could be kept (the score threshold, or top-k).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

BOX_TOLERANCE_PX = 0.5
SCORE_TOLERANCE = 1e-3
# Instances may appear or vanish only at a cut: scores this close to the lowest one kept.
CUT_TOLERANCE = 1e-3


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


def box_error(a: np.ndarray, b: np.ndarray) -> float:
    """The largest coordinate difference between two boxes, in pixels."""
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


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
