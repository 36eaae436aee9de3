"""Comparing one served mask with Detectron2's: IoU, and the two allowances for staged exports.

A pixel is in a mask when its pasted probability is >= 0.5.  Staged float32 stages round
differently from Detectron2's eager model, so a pixel whose probability sits at 0.5 may
flip; nothing else may.  Two ways to show that a mask under IoU 0.99 differs only so:

* small masks (always available): every pixel that differs lies on Detectron2's mask
  boundary (it has a 4-neighbour of the other value there) and at most 4 pixels + 1 % of
  the mask differ (``small_masks_with_flips``);
* Detectron2's own probabilities (when the reference recorded them, as ``benchmarks.zoo``
  does): every pixel that differs has a probability within ``MASK_PROB_MARGIN`` of 0.5 in
  Detectron2's M x M mask pasted into its box (``masks_at_threshold``).  The largest such
  margin is reported (``max_flip_margin``), so a run shows how close to the rule it came.
  Untrained weights put whole masks near 0.5 (the mask predictor's logits start near 0),
  which is where this is needed; a trained model's masks are far from 0.5 but at the edge.
"""

from __future__ import annotations

import numpy as np

from d2_triton.vision.detections import MASK_THRESHOLD, paste_probabilities

MIN_MASK_IOU = 0.99
# Staged exports: a mask under the IoU bound may differ by at most this many pixels plus
# this share of its area, all on Detectron2's mask boundary ...
MASK_FLIPS_PX = 4
MASK_FLIPS_SHARE = 0.01
# ... or only at pixels whose probability in Detectron2's mask is this close to 0.5: the
# score tolerance, for probabilities (a float32 mask head and paste move them by ~1e-5).
MASK_PROB_MARGIN = 1e-3


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


def flip_margin(flipped: np.ndarray, probs: np.ndarray, box: np.ndarray) -> float:
    """The largest distance from 0.5 of Detectron2's pasted probability at a flipped pixel.

    ``probs``: Detectron2's M x M probabilities of the instance, ``box``: its box in the
    image; pasted as the server pastes (``paste_probabilities``).  Pixels outside the paste
    region have probability 0.
    """
    region, (left, top, right, bottom) = paste_probabilities(probs, box, flipped.shape)
    pasted = np.zeros(flipped.shape, np.float32)
    pasted[top:bottom, left:right] = region
    return float(np.abs(pasted[flipped] - MASK_THRESHOLD).max(initial=0.0))


def compare_masks(figures, served: np.ndarray, reference, index: int, staged: bool) -> None:
    """Mask ``index`` of ``reference`` (a Prediction) against ``served``, into ``figures``.

    IoU >= 0.99, or (staged) one of the module's two allowances.
    """
    truth = reference.masks[index]
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
    margin = None
    if staged and reference.mask_probs is not None:
        margin = flip_margin(flipped, reference.mask_probs[index], reference.boxes[index])
        figures.max_flip_margin = max(figures.max_flip_margin or 0.0, margin)
        if margin <= MASK_PROB_MARGIN:
            figures.masks_at_threshold += 1
            return
    at = "" if margin is None else f", up to {margin:.2e} from 0.5"
    figures.problems.append(
        f"reference #{index}: mask IoU {iou:.4f} ({flips} of {int(truth.sum())} px "
        f"differ, {off_boundary} off Detectron2's edge{at})"
    )
