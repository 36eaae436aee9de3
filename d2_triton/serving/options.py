"""Per-request post-processing options, sent as Triton request parameters.

Triton forwards the parameters of a request to an ensemble to each composing Python model,
so a client sets them once on the ensemble call::

    client.infer("ensemble", inputs, parameters={"score_threshold": 0.5, "classes": "person,dog"})

Recognised parameters (unknown ones are ignored, as Triton itself ignores them):

``score_threshold``  float in [0, 1]; keep detections with ``score >= score_threshold``.
``max_detections``   int >= 0; keep at most this many, highest scores first.
``classes``          comma-separated class ids and/or names, e.g. ``"0,dog"``; keep only these.
``mask_format``      ``rle`` (COCO compressed RLE, default), ``dense`` (uint8 N x H x W) or
                     ``none`` (skip mask pasting entirely).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from d2_triton.errors import InvalidRequestError
from d2_triton.names import MASK_FORMATS
from d2_triton.vision.detections import Detections
from d2_triton.vision.labels import LabelMap


@dataclass(frozen=True)
class PostprocessOptions:
    """The options postprocess applies to one request (see the module docstring)."""

    score_threshold: float = 0.0
    max_detections: int | None = None
    classes: frozenset[int] | None = None
    mask_format: str = "rle"

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise InvalidRequestError(
                f"score_threshold must be within [0, 1], got {self.score_threshold}"
            )
        if self.max_detections is not None and self.max_detections < 0:
            raise InvalidRequestError(f"max_detections must be >= 0, got {self.max_detections}")
        if self.mask_format not in MASK_FORMATS:
            raise InvalidRequestError(
                f"mask_format must be one of {', '.join(MASK_FORMATS)}, got {self.mask_format!r}"
            )

    def updated_from(
        self, parameters: Mapping[str, object], labels: LabelMap
    ) -> PostprocessOptions:
        """These defaults overridden by a request's parameters; InvalidRequestError if bad."""
        changes: dict[str, object] = {}
        if "score_threshold" in parameters:
            changes["score_threshold"] = _as_float("score_threshold", parameters["score_threshold"])
        if "max_detections" in parameters:
            changes["max_detections"] = _as_int("max_detections", parameters["max_detections"])
        if "classes" in parameters:
            changes["classes"] = _as_class_set(parameters["classes"], labels)
        if "mask_format" in parameters:
            changes["mask_format"] = str(parameters["mask_format"]).strip().lower()
        return dataclasses.replace(self, **changes) if changes else self

    def apply(self, detections: Detections) -> Detections:
        """Filter by score and class, then keep the top ``max_detections`` by score."""
        keep = detections.scores >= np.float32(self.score_threshold)
        if self.classes is not None:
            keep &= np.isin(detections.classes, np.fromiter(self.classes, dtype=np.int64))
        indices = np.flatnonzero(keep)
        if self.max_detections is not None and len(indices) > self.max_detections:
            order = np.argsort(-detections.scores[indices], kind="stable")
            indices = np.sort(indices[order[: self.max_detections]])
        return detections.select(indices)


def _as_float(name: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidRequestError(f"{name} must be finite, got {value!r}")
    return number


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise InvalidRequestError(f"{name} must be an integer, got {value!r}")
    try:
        return int(str(value).strip())
    except ValueError:
        raise InvalidRequestError(f"{name} must be an integer, got {value!r}") from None


def _as_class_set(value: object, labels: LabelMap) -> frozenset[int]:
    items = [item for item in str(value).split(",") if item.strip()]
    if not items:
        raise InvalidRequestError("classes must name at least one class id or label")
    resolved = set()
    for item in items:
        try:
            resolved.add(labels.resolve(item))
        except KeyError:
            raise InvalidRequestError(f"classes: unknown class {item.strip()!r}") from None
    return frozenset(resolved)
