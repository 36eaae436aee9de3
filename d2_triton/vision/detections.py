"""Detection post-processing with Detectron2's semantics, in numpy.

The TorchScript model returns instances in the coordinates of the *resized* image, with
28x28 mask probabilities per box (``model.inference(..., do_postprocess=False)``).  This
module does what Detectron2's ``detector_postprocess`` then does, so the server answers what
``DefaultPredictor`` would:

* boxes scaled to the original image, clipped, and empty boxes dropped;
* masks pasted with ``layers/mask_ops.py`` semantics: each box's region is sampled with
  bilinear interpolation at pixel centres (``grid_sample``, ``align_corners=False``, zero
  padding) and thresholded at 0.5 (``>=``);
* the carried outputs' points (keypoints: ``d2_triton.carried``) scaled (x, y) and left
  unclipped.

Masks are encoded as COCO RLE without ever building an N x H x W array: each mask is only
non-zero inside its box, so its run lengths are computed from the box's columns alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as coco_mask

from d2_triton.carried import BY_NAME

MASK_THRESHOLD = 0.5


@dataclass
class Detections:
    """Per-instance arrays, all of the same length N, in original-image pixels."""

    boxes: np.ndarray  # float32 [N, 4] x1, y1, x2, y2
    scores: np.ndarray  # float32 [N]
    classes: np.ndarray  # int32 [N]
    mask_probs: np.ndarray | None = None  # float32 [N, M, M] in [0, 1]
    # The carried outputs the model has (``d2_triton.carried``), by name: keypoints
    # float32 [N, K, 3] x, y, score.
    carried: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: np.ndarray) -> Detections:
        """Index every per-instance array with the same boolean mask or index array."""
        return Detections(
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            classes=self.classes[keep],
            mask_probs=None if self.mask_probs is None else self.mask_probs[keep],
            carried={name: array[keep] for name, array in self.carried.items()},
        )


def rescale_to_original(
    detections: Detections, resized_hw: tuple[int, int], original_hw: tuple[int, int]
) -> Detections:
    """Detectron2's ``detector_postprocess`` minus mask pasting (done lazily, later).

    Scale factors are computed as Python floats and applied in float32, as torch does when
    it multiplies a float32 tensor by a Python scalar.
    """
    scale_x = np.float32(original_hw[1] / resized_hw[1])
    scale_y = np.float32(original_hw[0] / resized_hw[0])
    boxes = np.array(detections.boxes, dtype=np.float32, copy=True).reshape(-1, 4)
    boxes[:, 0::2] *= scale_x
    boxes[:, 1::2] *= scale_y
    height, width = original_hw
    np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
    rescaled = Detections(
        boxes=boxes,
        scores=np.asarray(detections.scores, dtype=np.float32),
        classes=np.asarray(detections.classes).astype(np.int32, copy=False),
        mask_probs=detections.mask_probs,
        carried={
            name: _rescale_points(array, scale_x, scale_y) if BY_NAME[name].points else array
            for name, array in detections.carried.items()
        },
    )
    nonempty = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
    return rescaled.select(nonempty)


def _rescale_points(array: np.ndarray, scale_x: np.float32, scale_y: np.float32) -> np.ndarray:
    """A copy of ``array`` with the x and y that start its last axis scaled (not clipped)."""
    points = np.array(array, dtype=np.float32, copy=True)
    points[..., 0] *= scale_x
    points[..., 1] *= scale_y
    return points


def _paste_region(box: np.ndarray, image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer region a box's mask is pasted into: the box grown by one pixel, clipped.

    Pixels outside it would sample the mask at less than half weight of its border, so they
    are always below the 0.5 threshold; Detectron2 skips them for the same reason.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    left = max(math.floor(x0) - 1, 0)
    top = max(math.floor(y0) - 1, 0)
    right = min(math.ceil(x1) + 1, image_hw[1])
    bottom = min(math.ceil(y1) + 1, image_hw[0])
    return left, top, right, bottom


def _bilinear_weights(start: int, stop: int, lo: np.float32, hi: np.float32, size: int):
    """Interpolation matrix [stop - start, size] sampling a mask axis at pixel centres.

    This is ``grid_sample(align_corners=False, padding_mode="zeros")`` along one axis: the
    pixel centre is normalised to [-1, 1] over the box, then mapped to mask coordinates;
    taps that fall outside the mask contribute zero.
    """
    centres = np.arange(start, stop, dtype=np.float32) + np.float32(0.5)
    normalised = (centres - lo) / (hi - lo) * np.float32(2) - np.float32(1)
    coords = ((normalised + np.float32(1)) * np.float32(size) - np.float32(1)) / np.float32(2)
    floor = np.floor(coords)
    frac = coords - floor
    floor = floor.astype(np.int64)
    weights = np.zeros((stop - start, size + 2), dtype=np.float32)
    rows = np.arange(stop - start)
    # Column j + 1 holds mask index j; columns 0 and size + 1 are the zero padding.
    weights[rows, np.clip(floor + 1, 0, size + 1)] += np.float32(1) - frac
    weights[rows, np.clip(floor + 2, 0, size + 1)] += frac
    return weights[:, 1 : size + 1]


def paste_mask(
    mask_probs: np.ndarray, box: np.ndarray, image_hw: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Paste one MxM probability mask into its box; return (binary region, region bounds).

    The region is (top:bottom, left:right) of the full image; everything outside it is 0.
    """
    left, top, right, bottom = _paste_region(box, image_hw)
    if right <= left or bottom <= top:
        return np.zeros((0, 0), dtype=bool), (left, top, left, top)
    x0, y0, x1, y1 = (np.float32(v) for v in box)
    size_y, size_x = mask_probs.shape
    weights_y = _bilinear_weights(top, bottom, y0, y1, size_y)
    weights_x = _bilinear_weights(left, right, x0, x1, size_x)
    region = weights_y @ mask_probs.astype(np.float32, copy=False) @ weights_x.T
    return region >= MASK_THRESHOLD, (left, top, right, bottom)


def paste_masks_dense(detections: Detections, image_hw: tuple[int, int]) -> np.ndarray:
    """All masks as a uint8 [N, H, W] array of 0/1 (the large, uncompressed format)."""
    masks = np.zeros((len(detections), *image_hw), dtype=np.uint8)
    if detections.mask_probs is None:
        return masks
    for index, (probs, box) in enumerate(zip(detections.mask_probs, detections.boxes, strict=True)):
        region, (left, top, right, bottom) = paste_mask(probs, box, image_hw)
        masks[index, top:bottom, left:right] = region
    return masks


def region_to_rle_counts(
    region: np.ndarray, bounds: tuple[int, int, int, int], image_hw: tuple[int, int]
) -> list[int]:
    """Uncompressed COCO RLE counts of a full-image mask that is zero outside ``bounds``.

    COCO RLE runs go down columns (Fortran order) and start with a run of zeros.  Only the
    columns inside the region are materialised (full height), so the work is
    O(height x region width) instead of O(height x width).
    """
    height, width = image_hw
    left, top, right, bottom = bounds
    columns = np.zeros((right - left, height), dtype=np.uint8)
    columns[:, top:bottom] = region.T
    flat = columns.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    leading_zeros = left * height
    trailing_zeros = (width - right) * height
    if counts:
        counts[0] += leading_zeros
    else:
        counts = [leading_zeros]
    if len(counts) % 2 == 1:  # last run is zeros: extend it
        counts[-1] += trailing_zeros
    elif trailing_zeros:
        counts.append(trailing_zeros)
    return counts


def compress_rle_counts(counts: list[int], image_hw: tuple[int, int]) -> bytes:
    """COCO's compact string form of RLE counts (as ``pycocotools.mask.encode`` writes)."""
    height, width = image_hw
    rle = coco_mask.frPyObjects({"counts": counts, "size": [height, width]}, height, width)
    return rle["counts"]


def encode_masks_rle(detections: Detections, image_hw: tuple[int, int]) -> list[bytes]:
    """One compressed COCO RLE string per instance, decodable with pycocotools."""
    if detections.mask_probs is None:
        return []
    encoded = []
    for probs, box in zip(detections.mask_probs, detections.boxes, strict=True):
        region, bounds = paste_mask(probs, box, image_hw)
        encoded.append(
            compress_rle_counts(region_to_rle_counts(region, bounds, image_hw), image_hw)
        )
    return encoded


def encode_mask_rle(mask: np.ndarray) -> bytes:
    """A whole-image bool mask as a compressed COCO RLE string."""
    return coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))["counts"]


def decode_rle(counts: bytes, image_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of ``encode_masks_rle`` for one instance: a bool [H, W] mask."""
    rle = {"counts": counts, "size": [int(image_hw[0]), int(image_hw[1])]}
    return coco_mask.decode(rle).astype(bool)


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """A binary mask's outer contours as COCO polygons ``[x1, y1, x2, y2, ...]``.

    Coordinates are pixel centres (+0.5), as Detectron2's ``GenericMask`` writes them, so a
    polygon rasterised again covers the pixels it came from.  Holes are not representable in
    COCO polygons and are dropped; contours of fewer than three points are skipped.
    """
    import cv2

    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    return [
        (contour.reshape(-1, 2).astype(np.float64) + 0.5).ravel().tolist()
        for contour in contours
        if len(contour) >= 3
    ]
