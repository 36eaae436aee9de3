"""The segments of a semantic or panoptic model's answer, and their JSON form.

A segment is one region of the image: a panoptic thing (an instance) or stuff class, or a
semantic class.  Its mask comes as COCO RLE (``mask_format=rle``), as the image's segment
map (``dense``: H x W segment ids, 0 where no segment is), or not at all (``none``); see
``d2_triton.vision.segments`` for how the server computes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from d2_triton import names
from d2_triton.client.values import exact_float, json_mask, text


@dataclass
class SegmentsResult:
    """Per-segment arrays of length S (see the module docstring)."""

    image_size: tuple[int, int]
    ids: np.ndarray  # int32 [S]
    classes: np.ndarray  # int32 [S], thing classes for things, stuff classes else
    labels: list[str]
    is_thing: np.ndarray  # bool [S]
    scores: np.ndarray  # float32 [S], NaN for stuff
    areas: np.ndarray  # int64 [S]
    masks_rle: list[bytes] | None = None
    segment_map: np.ndarray | None = None  # int32 [H, W]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_outputs(
        cls, outputs: dict[str, np.ndarray], image_size: tuple[int, int]
    ) -> SegmentsResult | None:
        """From the ensemble's output tensors; None when the model makes no segments."""
        if names.SEGMENT_IDS not in outputs:
            return None
        rle = outputs.get(names.SEGMENTS_RLE)
        return cls(
            image_size=image_size,
            ids=outputs[names.SEGMENT_IDS],
            classes=outputs[names.SEGMENT_CLASSES],
            labels=[text(label) for label in outputs[names.SEGMENT_LABELS]],
            is_thing=outputs[names.SEGMENT_IS_THING].astype(bool),
            scores=outputs[names.SEGMENT_SCORES],
            areas=outputs[names.SEGMENT_AREAS],
            masks_rle=None if rle is None else [bytes(item) for item in rle],
            segment_map=outputs.get(names.SEGMENT_MAP),
        )

    def mask(self, index: int) -> np.ndarray | None:
        """Segment ``index``'s pixels (H x W bool), from whichever form was returned."""
        if self.segment_map is not None:
            return self.segment_map == self.ids[index]
        if self.masks_rle is not None:
            from d2_triton.vision.detections import decode_rle

            return decode_rle(self.masks_rle[index], self.image_size)
        return None

    def class_map(self) -> np.ndarray | None:
        """Each pixel's segment id (H x W int32, 0: none), from whichever form was returned."""
        if self.segment_map is not None:
            return self.segment_map
        if self.masks_rle is None:
            return None
        ids = np.zeros(self.image_size, dtype=np.int32)
        for index in range(len(self)):
            ids[self.mask(index)] = self.ids[index]
        return ids

    def to_json(self, mask_format: str) -> list[dict[str, Any]]:
        """One object per segment; its ``mask`` as ``DetectionResult.to_json`` writes masks."""
        segments = []
        for index in range(len(self)):
            segment: dict[str, Any] = {
                "id": int(self.ids[index]),
                "class_id": int(self.classes[index]),
                "label": self.labels[index],
                "is_thing": bool(self.is_thing[index]),
                "area": int(self.areas[index]),
            }
            score = float(self.scores[index])
            if not math.isnan(score):
                segment["score"] = exact_float(score)
            if mask_format != "none" and (self.masks_rle or self.segment_map is not None):
                segment["mask"] = {
                    "size": list(self.image_size),
                    **self._json_mask(index, mask_format),
                }
            segments.append(segment)
        return segments

    def _json_mask(self, index: int, mask_format: str) -> dict[str, Any]:
        rle = None if self.masks_rle is None else self.masks_rle[index]
        return json_mask(mask_format, rle, lambda: self.mask(index), lambda: self._rle(index))

    def _rle(self, index: int) -> dict[str, Any]:
        """A segment of the dense map, encoded as COCO RLE here."""
        from d2_triton.vision.detections import encode_mask_rle

        return {"counts": encode_mask_rle(self.mask(index)).decode("ascii")}

    @classmethod
    def from_json(cls, segments: list[dict[str, Any]], image_size) -> SegmentsResult:
        """Inverse of ``to_json`` for RLE or mask-less segments."""
        masks = [s["mask"]["counts"].encode("ascii") for s in segments if "mask" in s]
        return cls(
            image_size=tuple(image_size),
            ids=np.array([s["id"] for s in segments], dtype=np.int32),
            classes=np.array([s["class_id"] for s in segments], dtype=np.int32),
            labels=[s["label"] for s in segments],
            is_thing=np.array([s["is_thing"] for s in segments], dtype=bool),
            scores=np.array([s.get("score", np.nan) for s in segments], dtype=np.float32),
            areas=np.array([s["area"] for s in segments], dtype=np.int64),
            masks_rle=masks if masks and len(masks) == len(segments) else None,
        )
