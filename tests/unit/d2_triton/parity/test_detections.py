"""The parity rules (d2_triton/parity/detections.py) on hand-made answers: allowed or not.

The integration suite compares real answers with these rules; here each allowance is shown
to admit exactly the case it names, and only for the staged (``cut`` given) comparison.
"""

from __future__ import annotations

import numpy as np

from d2_triton.client.results import DetectionResult
from d2_triton.parity.detections import Cut, Prediction, compare
from d2_triton.parity.masks import mask_iou
from helpers.parity import detections_per_image

CUT = Cut(score_threshold=0.05)
SIZE = (40, 40)


def square(top: int, side: int) -> np.ndarray:
    mask = np.zeros(SIZE, bool)
    mask[top : top + side, top : top + side] = True
    return mask


def reference(scores, masks=None, keypoints=None) -> Prediction:
    count = len(scores)
    return Prediction(
        boxes=np.tile(np.array([[1.0, 2.0, 30.0, 35.0]], np.float32), (count, 1))
        + np.arange(count, dtype=np.float32)[:, None] * 3,
        scores=np.array(scores, np.float32),
        classes=np.zeros(count, np.int32),
        masks=None if masks is None else np.stack(masks),
        keypoints=keypoints,
        image_size=SIZE,
    )


def served(prediction: Prediction, keep=None, masks=None, keypoints=None) -> DetectionResult:
    keep = list(range(len(prediction))) if keep is None else keep
    return DetectionResult(
        image_size=SIZE,
        boxes=prediction.boxes[keep] + 0.01,
        scores=prediction.scores[keep],
        classes=prediction.classes[keep],
        labels=["a"] * len(keep),
        masks=None if masks is None else np.stack(masks).astype(np.uint8),
        carried={} if keypoints is None else {"keypoints": keypoints},
    )


def test_an_instance_at_the_score_threshold_may_be_missing_when_staged():
    truth = reference([0.9, 0.0505])
    figures = compare(served(truth, keep=[0]), truth, CUT)
    assert not figures.problems and figures.at_cut == 1
    assert compare(served(truth, keep=[0]), truth).problems  # exact: no allowance


def test_an_instance_above_the_cut_may_not_be_missing():
    truth = reference([0.9, 0.3])
    assert compare(served(truth, keep=[0]), truth, CUT).problems


def test_a_boundary_pixel_of_a_small_mask_may_flip_when_staged():
    mask = square(10, 5)  # 25 px: one flip costs 4 % IoU
    flipped = mask.copy()
    flipped[9, 12] = True  # just outside the edge
    truth = reference([0.9], masks=[mask])
    figures = compare(served(truth, masks=[flipped]), truth, CUT)
    assert not figures.problems and figures.small_masks_with_flips == 1
    assert compare(served(truth, masks=[flipped]), truth).problems


def test_a_flip_away_from_the_boundary_or_too_many_flips_fail():
    mask = square(10, 5)
    inside_out = mask.copy()
    inside_out[30, 30] = True  # far from the mask
    truth = reference([0.9], masks=[mask])
    assert compare(served(truth, masks=[inside_out]), truth, CUT).problems
    grown = square(9, 7)  # 24 boundary pixels added: over 4 px + 1 %
    assert compare(served(truth, masks=[grown]), truth, CUT).problems


def test_a_keypoint_may_move_only_to_an_equal_maximum():
    points = np.array([[[5.0, 5.0, 2.0], [9.0, 9.0, 3.0]]], np.float32)
    truth = reference([0.9], keypoints=points)
    tied = points.copy()
    tied[0, 1, :2] = [15.0, 9.0]  # moved 6 px, same logit: a tied maximum
    figures = compare(served(truth, keypoints=tied), truth, CUT)
    assert not figures.problems and figures.keypoint_ties == 1
    assert compare(served(truth, keypoints=tied), truth).problems
    other = tied.copy()
    other[0, 1, 2] = 2.5  # moved and a different logit: a different answer
    assert compare(served(truth, keypoints=other), truth, CUT).problems


def test_tied_copies_may_swap_or_differ_in_number_but_a_lone_instance_may_not():
    truth = reference([0.9, 0.4, 0.4])  # two tied copies (same class and score)
    swapped = served(truth)
    swapped.boxes[2] += 50.0  # another copy of the tie survived NMS, elsewhere
    figures = compare(swapped, truth, CUT)
    assert not figures.problems and figures.tied_copies == 2  # one missing, one extra
    assert compare(swapped, truth).problems
    one_less = served(truth, keep=[0, 1])  # NMS kept one copy fewer
    figures = compare(one_less, truth, CUT)
    assert not figures.problems and figures.tied_copies == 1
    one_more = served(truth, keep=[0, 1, 2, 2])  # ... or one more
    one_more.boxes[3] += 50.0
    figures = compare(one_more, truth, CUT)
    assert not figures.problems and figures.tied_copies == 1
    assert compare(one_more, truth).problems
    none_left = served(truth, keep=[0])  # the detection itself gone: not a copy
    assert compare(none_left, truth, CUT).problems
    lone = reference([0.9, 0.4, 0.3])  # no tie: a moved instance is a different answer
    moved = served(lone)
    moved.boxes[2] += 50.0
    assert compare(moved, lone, CUT).problems
    lone_extra = served(lone, keep=[0, 1, 2, 2])  # a second copy where Detectron2 has one
    lone_extra.boxes[3] += 50.0
    lone_extra.scores[3] += 1e-4
    assert compare(lone_extra, lone, CUT).problems


def test_the_top_k_cut_is_the_exports_detections_per_image():
    assert detections_per_image([]) == 100  # Detectron2's TEST.DETECTIONS_PER_IMAGE
    options = ["MODEL.RPN.POST_NMS_TOPK_TEST", "100", "TEST.DETECTIONS_PER_IMAGE", "25"]
    assert detections_per_image(options) == 25
    full = reference([0.9] * 24 + [0.5])
    assert Cut(0.05, max_detections=25).score(full) == np.float32(0.5)
    assert Cut(0.05).score(full) == 0.05  # 25 of 100: the score threshold is the cut


def test_each_side_keeping_another_overlapping_copy_is_a_swap_only_when_staged():
    truth = reference([0.9, 0.5])  # no copy left on either side: NMS kept one of two
    other = served(truth)
    other.boxes[1] += 3.0  # the same class and score, the overlapping copy's place
    figures = compare(other, truth, CUT)
    assert not figures.problems and figures.tied_copies == 1
    assert compare(other, truth).problems  # exact exports get no allowance
    other.scores[1] = 0.6  # another score: not a copy of the same detection
    assert compare(other, truth, CUT).problems
    apart = served(truth)
    apart.boxes[1] += 40.0  # no overlap: NMS would have kept both, so this one moved
    assert compare(apart, truth, CUT).problems


def test_a_mask_that_moved_with_its_box_passes_when_staged():
    truth = reference([0.9], masks=[square(10, 10)])
    moved = square(12, 10)  # 64 px differ, off the edge: not a few flips
    assert mask_iou(moved, truth.masks[0]) < 0.99
    figures = compare(served(truth, masks=[moved]), truth, CUT)
    assert figures.problems  # Detectron2's mask on the served box not known
    truth.masks_for_served = moved[None]  # Detectron2's own mask head on the served box
    figures = compare(served(truth, masks=[moved]), truth, CUT)
    assert not figures.problems and figures.masks_given_box == 1
    assert figures.min_mask_iou_given_box == 1.0
    assert compare(served(truth, masks=[moved]), truth).problems  # exact: no allowance


def test_a_mask_unlike_detectron2s_on_the_same_box_fails():
    truth = reference([0.9], masks=[square(10, 10)])
    truth.masks_for_served = truth.masks.copy()  # the served box gives Detectron2's mask
    figures = compare(served(truth, masks=[square(12, 10)]), truth, CUT)
    assert figures.problems and "with Detectron2's mask on the served box" in figures.problems[0]
    assert figures.masks_given_box == 0


def test_keypoints_read_in_a_moved_box_pass_if_detectron2_reads_them_so_on_that_box():
    points = np.array([[[5.0, 5.0, 2.0], [9.0, 9.0, 3.0]]], np.float32)
    truth = reference([0.9], keypoints=points)
    on_box = points.copy()
    on_box[0, 1] = [11.0, 9.0, 3.5]  # the heatmap read in the served box: elsewhere, another logit
    assert compare(served(truth, keypoints=on_box), truth, CUT).problems
    truth.keypoints_for_served = on_box.copy()  # Detectron2's keypoint head on the served box
    figures = compare(served(truth, keypoints=on_box), truth, CUT)
    assert not figures.problems and figures.keypoints_given_box == 1
    assert compare(served(truth, keypoints=on_box), truth).problems  # exact: no allowance
    truth.keypoints_for_served = points.copy()  # the served box gives Detectron2's keypoints
    assert compare(served(truth, keypoints=on_box), truth, CUT).problems
