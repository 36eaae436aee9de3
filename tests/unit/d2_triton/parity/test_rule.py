"""d2_triton.parity.rule: instances paired by class and closest box, not by position."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from d2_triton.parity.rule import at_cut, pair_instances


@dataclass
class Answer:
    classes: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


def answer(rows) -> Answer:
    classes, boxes, scores = zip(*rows, strict=True) if rows else ((), (), ())
    return Answer(np.array(classes), np.array(boxes, np.float32).reshape(-1, 4), np.array(scores))


def test_instances_pair_by_class_and_closest_box_in_any_order():
    reference = answer([(0, [0, 0, 10, 10], 0.9), (1, [5, 5, 20, 20], 0.8)])
    other = answer([(1, [5, 5, 20, 20.2], 0.8), (0, [0, 0, 10, 10], 0.9)])
    pairing = pair_instances(reference, other, within_tolerance=True)
    assert pairing.pairs == {0: 1, 1: 0}
    assert pairing.unpaired_reference == pairing.unpaired_other == []


def test_within_tolerance_a_far_box_or_score_stays_unpaired():
    reference = answer([(0, [0, 0, 10, 10], 0.9), (0, [30, 30, 40, 40], 0.5)])
    other = answer([(0, [0, 0, 11, 10], 0.9), (0, [30, 30, 40, 40], 0.6)])
    pairing = pair_instances(reference, other, within_tolerance=True)
    assert pairing.pairs == {} and pairing.unpaired_reference == [0, 1]
    assert pairing.unpaired_other == [0, 1]
    exact = pair_instances(reference, other, within_tolerance=False)
    assert exact.pairs == {0: 0, 1: 1}  # the caller then checks the tolerances


def test_the_cut_allows_only_scores_at_it():
    assert at_cut(0.0505, 0.05) and not at_cut(0.06, 0.05)
