"""Comparing one served mask with Detectron2's: IoU, and the two allowances for staged exports.

A staged export's boxes differ from Detectron2's by float rounding (within 0.5 px, checked
as boxes), and a mask is predicted from its box and pasted into it, so a box a few
hundredths of a pixel off moves the mask's pixels at its edge, and more where the mask's
probabilities change fast between neighbouring pixels (untrained weights' noisy masks).
A mask under IoU 0.99 still passes a staged comparison when:

* it is small: every pixel that differs lies on Detectron2's mask boundary (it has a
  4-neighbour of the other value there) and at most 4 pixels + 1 % of the mask differ
  (``small_masks_with_flips``); or
* the difference is its box's: Detectron2's own mask head, run on the served box
  (``Prediction.masks_for_served``, which ``benchmarks.zoo.run`` records with Detectron2's
  ``forward_with_given_boxes``), gives the served mask within IoU 0.99
  (``masks_given_box``).  The box is compared on its own; this checks the mask head and the
  paste, apart from the box.
"""

from __future__ import annotations

import numpy as np

MIN_MASK_IOU = 0.99
# Staged exports: a mask under the IoU bound may differ by at most this many pixels plus
# this share of its area, all on Detectron2's mask boundary.
MASK_FLIPS_PX = 4
MASK_FLIPS_SHARE = 0.01


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of the other value (both sides of the mask's edge)."""
    mask = mask.astype(bool)
    padded = np.pad(mask, 1, mode="edge")
    neighbours = (padded[1:-1, :-2], padded[1:-1, 2:], padded[:-2, 1:-1], padded[2:, 1:-1])
    return np.logical_or.reduce([neighbour != mask for neighbour in neighbours])


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare_masks(
    figures, served: np.ndarray, truth: np.ndarray, index: int, staged: bool, given=None
) -> None:
    """Reference mask ``index`` (``truth``) against ``served``, into ``figures``.

    IoU >= 0.99, or (staged) one of the module's two allowances; ``given``: Detectron2's
    mask for the served instance's box, when recorded.
    """
    iou = mask_iou(served, truth)
    figures.min_mask_iou = min(figures.min_mask_iou or 1.0, iou)
    if iou >= MIN_MASK_IOU:
        return
    flipped = np.logical_xor(served, truth)
    flips = int(flipped.sum())
    allowed = MASK_FLIPS_PX + MASK_FLIPS_SHARE * float(truth.sum())
    off_boundary = int(np.sum(flipped & ~mask_boundary(truth)))
    if staged and flips <= allowed and not off_boundary:
        figures.small_masks_with_flips += 1
        return
    same_box = ""
    if staged and given is not None:
        given_iou = mask_iou(served, given)
        figures.min_mask_iou_given_box = min(figures.min_mask_iou_given_box or 1.0, given_iou)
        if given_iou >= MIN_MASK_IOU:
            figures.masks_given_box += 1
            return
        same_box = f"; IoU {given_iou:.4f} with Detectron2's mask on the served box"
    figures.problems.append(
        f"reference #{index}: mask IoU {iou:.4f} ({flips} of {int(truth.sum())} px "
        f"differ, {off_boundary} off Detectron2's edge{same_box})"
    )
