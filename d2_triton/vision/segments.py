"""Semantic and panoptic segments with Detectron2's semantics.

The detector returns the semantic head's logits at the head's stride (``SemSegFPNHead.layers``,
C x h x w); this module does what Detectron2 then does, so the server answers what
``DefaultPredictor`` would:

* :func:`semantic_map`: the head's upsampling (``interpolate(scale_factor=stride)``), then
  ``sem_seg_postprocess`` (crop to the resized image, bilinear resize to the original) and
  the arg-max over classes.  The same torch calls on the same logits, a few classes at a
  time (the interpolation is per class, so chunking changes no value; the full C x H x W
  logits of a large photo would take gigabytes);
* :func:`panoptic_segments`: ``combine_semantic_and_instance_outputs`` of Detectron2's
  ``panoptic_fpn.py``: instances by descending score down to a score threshold, each kept
  unless it overlaps the segments already placed by more than a share of its area, then
  each stuff class (not class 0, Detectron2's "things") on the pixels left, if its area
  reaches a minimum.

A segment is an id (its value in the segment map, from 1; 0 is no segment), a class in its
own label space (thing classes for things, the semantic head's for stuff), whether it is a
thing, its instance's score (NaN for stuff) and its area in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from d2_triton.model_config import PanopticSettings
from d2_triton.vision.detections import Detections, encode_mask_rle, paste_mask

# Classes interpolated at once (8 x 1080 x 1920 float32 logits: 66 MB).
CLASSES_PER_CHUNK = 8
# Detectron2's panoptic FPN: semantic class 0 stands for every thing class.
THINGS_CLASS = 0


@dataclass
class Segments:
    """Per-segment arrays of length S, and the H x W map of their ids."""

    ids: np.ndarray  # int32 [S], 1..S
    classes: np.ndarray  # int32 [S]
    is_thing: np.ndarray  # bool [S]
    scores: np.ndarray  # float32 [S], NaN for stuff
    areas: np.ndarray  # int64 [S]
    segment_map: np.ndarray  # int32 [H, W]

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, index: int) -> np.ndarray:
        """Segment ``index``'s pixels, bool H x W."""
        return self.segment_map == self.ids[index]


def semantic_map(
    logits: np.ndarray, stride: int, resized_hw: tuple[int, int], original_hw: tuple[int, int]
) -> np.ndarray:
    """The arg-max class of each original pixel (int32 H x W) from the head's logits."""
    import torch
    from torch.nn.functional import interpolate

    height, width = resized_hw
    batch = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))[None]
    best_value = best_class = None
    with torch.inference_mode():
        for start in range(0, batch.shape[1], CLASSES_PER_CHUNK):
            chunk = batch[:, start : start + CLASSES_PER_CHUNK]
            chunk = interpolate(chunk, scale_factor=stride, mode="bilinear", align_corners=False)
            chunk = chunk[:, :, :height, :width]
            chunk = interpolate(chunk, size=original_hw, mode="bilinear", align_corners=False)[0]
            value, index = chunk.max(dim=0)
            if best_value is None:
                best_value, best_class = value, index + start
            else:
                better = value > best_value  # ties keep the lower class, as argmax does
                best_value = torch.where(better, value, best_value)
                best_class = torch.where(better, index + start, best_class)
    return best_class.numpy().astype(np.int32)


def semantic_segments(classes: np.ndarray) -> Segments:
    """One segment per class present in the class map, in class order."""
    present, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)
    count = len(present)
    return Segments(
        ids=np.arange(1, count + 1, dtype=np.int32),
        classes=present.astype(np.int32),
        is_thing=np.zeros(count, dtype=bool),
        scores=np.full(count, np.nan, dtype=np.float32),
        areas=counts.astype(np.int64),
        segment_map=(inverse.reshape(classes.shape) + 1).astype(np.int32),
    )


def panoptic_segments(
    detections: Detections, classes: np.ndarray, settings: PanopticSettings
) -> Segments:
    """Detectron2's panoptic combination of instances and the semantic class map.

    ``detections`` are every instance, rescaled to the original image, with masks.
    """
    segment_map = np.zeros(classes.shape, dtype=np.int32)
    rows: list[tuple[int, bool, float, int]] = []  # class, is thing, score, area
    for index in np.argsort(-detections.scores, kind="stable"):
        score = float(detections.scores[index])
        if score < settings.score_threshold:
            break
        region, (left, top, right, bottom) = paste_mask(
            detections.mask_probs[index], detections.boxes[index], classes.shape
        )
        area = int(region.sum())
        if area == 0:
            continue
        window = segment_map[top:bottom, left:right]
        free = window == 0
        if int((region & ~free).sum()) / area > settings.overlap_threshold:
            continue
        mask = region & free
        window[mask] = len(rows) + 1
        rows.append((int(detections.classes[index]), True, score, int(mask.sum())))
    for label in np.unique(classes):
        if label == THINGS_CLASS:
            continue
        mask = (classes == label) & (segment_map == 0)
        area = int(mask.sum())
        if area < settings.stuff_area:
            continue
        segment_map[mask] = len(rows) + 1
        rows.append((int(label), False, float("nan"), area))
    return Segments(
        ids=np.arange(1, len(rows) + 1, dtype=np.int32),
        classes=np.array([row[0] for row in rows], dtype=np.int32),
        is_thing=np.array([row[1] for row in rows], dtype=bool),
        scores=np.array([row[2] for row in rows], dtype=np.float32),
        areas=np.array([row[3] for row in rows], dtype=np.int64),
        segment_map=segment_map,
    )


def encode_segments_rle(segments: Segments) -> list[bytes]:
    """One compressed COCO RLE string per segment."""
    return [encode_mask_rle(segments.mask(index)) for index in range(len(segments))]
