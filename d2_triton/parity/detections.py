"""Compare a served answer with Detectron2's, instance by instance: the parity rule.

Used by the parity tests and by ``benchmarks.zoo.run``.

Instances are paired as the exporter pairs them (``d2_triton.parity.rule``, which holds
the box, score and cut tolerances: 0.5 px, 1e-3, 1e-3); here masks (IoU >= 0.99) and
keypoints (within 0.5 px) are compared too.

Four allowances for the default, staged export, whose float32 results differ from
Detectron2's by rounding (each is counted in the figures; ``--exact`` gets neither):

* the cut: an instance whose score sits at a cut may be kept on one side and dropped on the
  other.  It may be unpaired only if its score is within 1e-3 of the cut (the model's score
  threshold or, when Detectron2 returned its maximum number of detections, the lowest score
  it kept): ``at_cut``;
* tied copies: over a uniform region a class fires as several translated copies with one
  score, and rounding of their overlaps decides how many copies survive NMS and top-k.  An
  unpaired instance may be such a copy if its own side holds another instance of its class
  with the same score (to 1e-5) and the other side holds an instance of its class and score
  (to 1e-3), i.e. the detection is there, once more or once less; or each side kept a
  different one of two overlapping copies, an unpaired instance on each side of one class
  and score (to 1e-3) with boxes overlapping by NMS's IoU of 0.5 or more, a swap
  (``d2_triton.parity.rule.take_swapped_ties``): ``tied_copies``;
* keypoint ties: a keypoint more than 0.5 px away whose heatmap logit equals Detectron2's
  within 1e-3 is the other location of a tied maximum: ``keypoint_ties``;
* masks whose box moved them: a box off by rounding moves its mask's edge pixels; a mask
  under IoU 0.99 passes if it is small and differs only on its edge, or if Detectron2's mask
  on the served box matches it (``d2_triton.parity.masks``):
  ``small_masks_with_flips``, ``masks_given_box``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from d2_triton.parity.masks import compare_masks
from d2_triton.parity.prediction import Prediction
from d2_triton.parity.rule import (
    BOX_TOLERANCE_PX,
    SCORE_TOLERANCE,
    at_cut,
    box_error,
    pair_instances,
    take_swapped_ties,
)

if TYPE_CHECKING:  # the served answer's type only: the exporter imports no client
    from d2_triton.client import DetectionResult

KEYPOINT_TOLERANCE_PX = 0.5
# Scores this close are ties: identical copies of one instance (see _tie_swap).
TIE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Cut:
    """Where Detectron2 cuts the instance list: its score threshold and top-k."""

    score_threshold: float
    max_detections: int = 100

    def score(self, reference: Prediction) -> float:
        """The lowest score that could be kept for this image."""
        if len(reference) >= self.max_detections:
            return float(np.min(reference.scores))
        return self.score_threshold

    def allows(self, score: float, reference: Prediction) -> bool:
        """An instance with ``score`` may be unpaired: it sits at the cut."""
        return at_cut(score, self.score(reference))


@dataclass
class ParityFigures:
    """What one or more comparisons found: counts, worst errors and the problems."""

    photos: int = 0
    instances: int = 0
    at_cut: int = 0
    tied_copies: int = 0
    max_box_error_px: float = 0.0
    max_score_error: float = 0.0
    min_mask_iou: float | None = None
    small_masks_with_flips: int = 0
    masks_given_box: int = 0
    min_mask_iou_given_box: float | None = None  # of the masks compared so
    max_keypoint_error_px: float | None = None
    keypoint_ties: int = 0
    keypoints_given_box: int = 0
    segments: int = 0
    min_segment_agreement: float | None = None  # share of pixels of the same category
    semantic_ties: int = 0
    problems: list[str] = field(default_factory=list)

    def merge(self, other: ParityFigures) -> None:
        """Add ``other``'s counts and problems; keep the worse of each error."""
        self.photos += other.photos
        self.instances += other.instances
        self.at_cut += other.at_cut
        self.tied_copies += other.tied_copies
        self.keypoint_ties += other.keypoint_ties
        self.keypoints_given_box += other.keypoints_given_box
        self.small_masks_with_flips += other.small_masks_with_flips
        self.masks_given_box += other.masks_given_box
        if other.min_mask_iou_given_box is not None:
            self.min_mask_iou_given_box = min(
                self.min_mask_iou_given_box or 1.0, other.min_mask_iou_given_box
            )
        self.segments += other.segments
        self.semantic_ties += other.semantic_ties
        if other.min_segment_agreement is not None:
            self.min_segment_agreement = min(
                self.min_segment_agreement or 1.0, other.min_segment_agreement
            )
        self.max_box_error_px = max(self.max_box_error_px, other.max_box_error_px)
        self.max_score_error = max(self.max_score_error, other.max_score_error)
        if other.min_mask_iou is not None:
            self.min_mask_iou = min(self.min_mask_iou or 1.0, other.min_mask_iou)
        if other.max_keypoint_error_px is not None:
            self.max_keypoint_error_px = max(
                self.max_keypoint_error_px or 0.0, other.max_keypoint_error_px
            )
        self.problems += other.problems

    def summary(self) -> dict:
        """The figures without the problem list, for the report."""
        return {key: value for key, value in asdict(self).items() if key != "problems"}

    def merge_keypoints(
        self, served: np.ndarray, reference: np.ndarray, index: int, allow_ties: bool, given=None
    ) -> None:
        """(x, y) within 0.5 px; the third value (heatmap logit) to 1e-3 relative.

        With ``allow_ties`` (staged exports) a keypoint may sit elsewhere if its logit equals
        Detectron2's within that tolerance: the heatmap's maximum is tied and float rounding
        picked the other location (counted in ``keypoint_ties``).  ``given`` (staged, when
        recorded): Detectron2's keypoints for the served box; keypoints that differ from the
        reference's pass if they match these (``keypoints_given_box``): the heatmap is read
        in the box, which may differ by rounding.
        """
        problems, ties, error = _keypoint_check(served, reference, allow_ties)
        if problems and allow_ties and given is not None:
            on_box = _keypoint_check(served, given, allow_ties)
            if not on_box[0]:
                self.keypoints_given_box += 1
                problems, ties, error = on_box
        self.keypoint_ties += ties
        if error is not None:
            self.max_keypoint_error_px = max(self.max_keypoint_error_px or 0.0, error)
        self.problems += [f"reference #{index}: {problem}" for problem in problems]


def _keypoint_check(served: np.ndarray, reference: np.ndarray, allow_ties: bool):
    """(problems, tied keypoints, largest error in px of the others) of one instance."""
    errors = np.abs(served[:, :2] - reference[:, :2]).max(axis=1)
    logit_scale = np.maximum(1.0, np.abs(reference[:, 2]))
    same_logit = np.abs(served[:, 2] - reference[:, 2]) <= SCORE_TOLERANCE * logit_scale
    moved = errors > KEYPOINT_TOLERANCE_PX
    ties = moved & same_logit if allow_ties else np.zeros_like(moved)
    kept = errors[~ties]
    problems = []
    if np.any(moved & ~ties):
        problems.append(f"keypoints off by {errors.max():.3f} px")
    if not np.all(same_logit):
        problems.append("keypoint logits differ")
    return problems, int(ties.sum()), float(kept.max()) if kept.size else None


def rule_for(info: dict) -> Cut | None:
    """The rule an export is held to, from its ``export_info.json``.

    The cut rule at its score threshold and top-k if it is staged, None (no allowances) if
    exact.
    """
    if info["detector_mode"] != "staged":
        return None
    return Cut(info["score_thresh_test"], info["detections_per_image"])


def compare(
    served: DetectionResult, reference: Prediction, cut: Cut | None = None
) -> ParityFigures:
    """Pair and compare; ``cut`` (staged exports) allows the module's four allowances.

    Exact exports pair each reference instance with the closest box of its class and then
    check the tolerances; staged ones pair only within the box and score tolerances, and
    what stays unpaired must be at the cut or a tied copy.
    """
    figures = ParityFigures(photos=1, instances=len(reference))
    if tuple(served.image_size) != tuple(reference.image_size):
        figures.problems.append(f"image size {served.image_size} != {reference.image_size}")
        return figures
    if cut is None and len(served) != len(reference):
        figures.problems.append(f"{len(served)} instances served, Detectron2: {len(reference)}")
        return figures
    pairing = pair_instances(reference, served, within_tolerance=cut is not None)
    for index, best in pairing.pairs.items():
        compare_pair(figures, served, best, reference, index, cut is not None)
    if cut is not None:
        figures.tied_copies += take_swapped_ties(pairing, reference, served)
    for index in pairing.unpaired_reference:
        _account_unpaired(figures, index, reference, served, reference, cut, "reference")
    for extra in pairing.unpaired_other:
        _account_unpaired(figures, extra, served, reference, reference, cut, "served")
    if reference.sem_seg is not None or reference.panoptic is not None:
        from d2_triton.parity.segments import compare_segments

        compare_segments(figures, served.segments, reference, staged=cut is not None)
    return figures


def _account_unpaired(figures, index, side, other, reference, cut, name) -> None:
    """An instance of ``side`` left unpaired: at the cut, a tied copy, or a problem."""
    score = float(side.scores[index])
    if cut is not None and cut.allows(score, reference):
        figures.at_cut += 1
    elif cut is not None and _tied_copy(index, side, other):
        figures.tied_copies += 1
    else:
        whom = "served instance" if name == "reference" else "Detectron2 instance"
        figures.problems.append(f"{name} #{index}: no {whom} pairs with it")


def compare_pair(
    figures: ParityFigures,
    served: DetectionResult,
    best: int,
    reference: Prediction,
    index: int,
    staged: bool,
) -> None:
    """Box, score, mask and keypoints of one pair, into ``figures``."""
    box_off = box_error(served.boxes[best], reference.boxes[index])
    score_error = float(abs(served.scores[best] - reference.scores[index]))
    figures.max_box_error_px = max(figures.max_box_error_px, box_off)
    figures.max_score_error = max(figures.max_score_error, score_error)
    if box_off > BOX_TOLERANCE_PX:
        figures.problems.append(f"reference #{index}: box off by {box_off:.3f} px")
    if score_error > SCORE_TOLERANCE:
        figures.problems.append(f"reference #{index}: score off by {score_error:.2e}")
    if reference.masks is not None:
        given = None if reference.masks_for_served is None else reference.masks_for_served[best]
        compare_masks(figures, served.mask(best), reference.masks[index], index, staged, given)
    if reference.keypoints is not None:
        given = reference.keypoints_for_served
        figures.merge_keypoints(
            served.keypoints[best],
            reference.keypoints[index],
            index,
            staged,
            None if given is None else given[best],
        )


def _tied_copy(index: int, side, other) -> bool:
    """Whether instance ``index`` of ``side`` is one of several tied copies the other side has.

    ``side`` and ``other`` are the two answers (served and Detectron2's, either way round).
    True when ``side`` holds another instance of the class with the same score (within
    TIE_TOLERANCE: translated copies on a uniform region) and ``other`` holds an instance of
    the class and score (within SCORE_TOLERANCE): the copies' overlaps, decided by rounding,
    settled how many of them NMS kept.
    """
    klass, score = int(side.classes[index]), float(side.scores[index])
    own = np.abs(side.scores[side.classes.astype(int) == klass].astype(float) - score)
    theirs = np.abs(other.scores[other.classes.astype(int) == klass].astype(float) - score)
    return int((own <= TIE_TOLERANCE).sum()) >= 2 and bool(np.any(theirs <= SCORE_TOLERANCE))
