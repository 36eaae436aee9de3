"""What the ensemble answers for one image, as numpy arrays, and its JSON form.

Shared by the Triton clients (sync and async), the REST gateway, the renderer and the CLI,
so "the JSON of a detection" means one thing everywhere.  Floats are written as the shortest
decimal that reads back to the same float32 (``0.9``, not ``0.8999999761581421``): readable,
and exact for anyone who parses them into float32 again.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from d2_triton import carried, names
from d2_triton.client.segment_results import SegmentsResult
from d2_triton.client.values import exact_float, json_mask, text
from d2_triton.errors import InvalidArgumentError

if TYPE_CHECKING:
    from d2_triton.vision.labels import LabelMap


@dataclass
class DetectionResult:
    """The ensemble's outputs for one image (original-image pixels)."""

    image_size: tuple[int, int]  # (height, width)
    boxes: np.ndarray  # float32 [N, 4] x1, y1, x2, y2
    scores: np.ndarray  # float32 [N]
    classes: np.ndarray  # int32 [N]
    labels: list[str]
    masks_rle: list[bytes] | None = None  # COCO compressed RLE counts per instance
    masks: np.ndarray | None = None  # uint8 [N, H, W] when mask_format="dense"
    segments: SegmentsResult | None = None  # a semantic or panoptic model's
    # The carried outputs the model has (``d2_triton.carried``), by name.
    carried: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def keypoints(self) -> np.ndarray | None:
        """A Keypoint R-CNN's keypoints: float32 [N, K, 3] x, y, logit (else None)."""
        return self.carried.get(carried.KEYPOINTS.name)

    @classmethod
    def from_outputs(cls, outputs: dict[str, np.ndarray]) -> DetectionResult:
        """From the ensemble's output tensors, by name (as a Triton client returns them)."""
        rle = outputs.get(names.MASKS_RLE)
        image_size = tuple(int(v) for v in outputs[names.IMAGE_SIZE])
        return cls(
            image_size=image_size,
            boxes=outputs[names.BOXES].reshape(-1, 4),
            scores=outputs[names.SCORES],
            classes=outputs[names.CLASSES],
            labels=[text(label) for label in outputs[names.LABELS]],
            masks_rle=None if rle is None else [bytes(item) for item in rle],
            masks=outputs.get(names.MASKS),
            segments=SegmentsResult.from_outputs(outputs, image_size),
            carried={name: outputs[name] for name in carried.BY_NAME if name in outputs},
        )

    @property
    def has_masks(self) -> bool:
        """Whether the result carries masks (RLE or dense)."""
        return self.masks is not None or self.masks_rle is not None

    def mask(self, index: int) -> np.ndarray | None:
        """Instance ``index``'s binary mask (H x W bool), whichever format was returned."""
        if self.masks is not None:
            return self.masks[index].astype(bool)
        if self.masks_rle is not None:
            from d2_triton.vision.detections import decode_rle

            return decode_rle(self.masks_rle[index], self.image_size)
        return None

    def relabelled(self, names: LabelMap) -> DetectionResult:
        """The same detections named by ``names``, e.g. a client-side label-map override."""
        return DetectionResult(
            image_size=self.image_size,
            boxes=self.boxes,
            scores=self.scores,
            classes=self.classes,
            labels=[names.name(int(class_id)) for class_id in self.classes],
            masks_rle=self.masks_rle,
            masks=self.masks,
            segments=self.segments,
            carried=self.carried,
        )

    def to_json(self, mask_format: str = "rle") -> dict[str, Any]:
        """Plain JSON: one object per detection, and per segment if the model makes them.

        ``mask_format``: ``rle`` (COCO compressed RLE ``{"size", "counts"}``, or
        ``{"size", "packbits"}`` when dense masks were returned), ``polygon`` (COCO polygons
        ``{"size", "polygons": [[x1, y1, x2, y2, ...], ...]}``) or ``none``.  Segments'
        masks are RLE or polygons alike.
        """
        if mask_format not in names.JSON_MASK_FORMATS:
            raise InvalidArgumentError(
                f"mask_format must be one of {names.JSON_MASK_FORMATS}, got {mask_format!r}"
            )
        height, width = self.image_size
        detections = []
        for index in range(len(self)):
            detection: dict[str, Any] = {
                "box": [exact_float(v) for v in self.boxes[index]],
                "score": exact_float(self.scores[index]),
                "class_id": int(self.classes[index]),
                "label": self.labels[index],
            }
            if self.has_masks and mask_format != "none":
                detection["mask"] = {"size": [height, width], **self._json_mask(index, mask_format)}
            for name, array in self.carried.items():
                detection[name] = _exact_floats(array[index])
            detections.append(detection)
        document = {"image_size": {"height": height, "width": width}, "detections": detections}
        if self.segments is not None:
            document["segments"] = self.segments.to_json(mask_format)
        return document

    def _json_mask(self, index: int, mask_format: str) -> dict[str, Any]:
        rle = None if self.masks_rle is None else self.masks_rle[index]
        return json_mask(mask_format, rle, lambda: self.mask(index), lambda: self._packed(index))

    def _packed(self, index: int) -> dict[str, Any]:
        """A dense mask as base64 of its packed bits (``np.packbits``, row-major)."""
        packed = np.packbits(self.masks[index].astype(bool), axis=None)
        return {"packbits": base64.b64encode(packed.tobytes()).decode("ascii")}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> DetectionResult:
        """Inverse of ``to_json`` for RLE or mask-less documents (what a gateway returns)."""
        size = (int(document["image_size"]["height"]), int(document["image_size"]["width"]))
        detections = document["detections"]
        masks = [d["mask"] for d in detections if "mask" in d]
        if masks and any("counts" not in mask for mask in masks):
            raise InvalidArgumentError("only RLE masks can be read back; ask for mask_format=rle")
        return cls(
            image_size=size,
            boxes=np.array([d["box"] for d in detections], dtype=np.float32).reshape(-1, 4),
            scores=np.array([d["score"] for d in detections], dtype=np.float32),
            classes=np.array([d["class_id"] for d in detections], dtype=np.int32),
            labels=[d["label"] for d in detections],
            masks_rle=[m["counts"].encode("ascii") for m in masks] if masks else None,
            segments=(
                SegmentsResult.from_json(document["segments"], size)
                if "segments" in document
                else None
            ),
            carried=_carried_from_json(detections),
        )


def _exact_floats(value: np.ndarray) -> list:
    """An array as nested lists of ``exact_float``s."""
    if value.ndim == 0:
        return exact_float(value)
    return [_exact_floats(item) for item in value]


def _carried_from_json(detections: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The carried outputs of a JSON document's detections (those every detection has)."""
    return {
        kind.name: np.array([d[kind.name] for d in detections], dtype=kind.dtype)
        for kind in carried.CARRIED
        if detections and all(kind.name in d for d in detections)
    }
