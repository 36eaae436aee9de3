"""Compare the server's answer with Detectron2's, instance by instance.

Instances are paired, not zipped: several can share a score (random weights saturate many
at 1.0), so each reference instance is matched to the served instance of the same class
with the closest box.  Tolerances are the issue's: boxes within 0.5 px, scores within 1e-3,
mask IoU >= 0.99, and keypoints within 0.5 px.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from d2_triton.client import DetectionResult
from helpers.reference import Prediction

BOX_TOLERANCE_PX = 0.5
SCORE_TOLERANCE = 1e-3
MIN_MASK_IOU = 0.99
KEYPOINT_TOLERANCE_PX = 0.5


@dataclass
class ParityFigures:
    photos: int = 0
    instances: int = 0
    max_box_error_px: float = 0.0
    max_score_error: float = 0.0
    min_mask_iou: float | None = None
    max_keypoint_error_px: float | None = None
    problems: list[str] = field(default_factory=list)

    def merge(self, other: ParityFigures) -> None:
        self.photos += other.photos
        self.instances += other.instances
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

    def merge_keypoints(self, served: np.ndarray, reference: np.ndarray, index: int) -> None:
        """(x, y) within 0.5 px; the third value (heatmap logit) to 1e-3 relative."""
        error = float(np.abs(served[:, :2] - reference[:, :2]).max())
        self.max_keypoint_error_px = max(self.max_keypoint_error_px or 0.0, error)
        if error > KEYPOINT_TOLERANCE_PX:
            self.problems.append(f"reference #{index}: keypoints off by {error:.3f} px")
        logit_scale = np.maximum(1.0, np.abs(reference[:, 2]))
        if not np.all(np.abs(served[:, 2] - reference[:, 2]) <= SCORE_TOLERANCE * logit_scale):
            self.problems.append(f"reference #{index}: keypoint logits differ")


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare(served: DetectionResult, reference: Prediction) -> ParityFigures:
    figures = ParityFigures(photos=1, instances=len(reference))
    if tuple(served.image_size) != tuple(reference.image_size):
        figures.problems.append(f"image size {served.image_size} != {reference.image_size}")
        return figures
    if len(served) != len(reference):
        figures.problems.append(f"{len(served)} instances served, Detectron2: {len(reference)}")
        return figures
    unmatched = set(range(len(served)))
    for index in range(len(reference)):
        candidates = [
            j for j in unmatched if int(served.classes[j]) == int(reference.classes[index])
        ]
        if not candidates:
            figures.problems.append(f"reference #{index}: no served instance of its class")
            continue
        errors = [np.abs(served.boxes[j] - reference.boxes[index]).max() for j in candidates]
        best = candidates[int(np.argmin(errors))]
        unmatched.discard(best)
        box_error = float(min(errors))
        score_error = float(abs(served.scores[best] - reference.scores[index]))
        figures.max_box_error_px = max(figures.max_box_error_px, box_error)
        figures.max_score_error = max(figures.max_score_error, score_error)
        if box_error > BOX_TOLERANCE_PX:
            figures.problems.append(f"reference #{index}: box off by {box_error:.3f} px")
        if score_error > SCORE_TOLERANCE:
            figures.problems.append(f"reference #{index}: score off by {score_error:.2e}")
        if reference.masks is not None:
            iou = mask_iou(served.mask(best), reference.masks[index])
            figures.min_mask_iou = min(figures.min_mask_iou or 1.0, iou)
            if iou < MIN_MASK_IOU:
                figures.problems.append(f"reference #{index}: mask IoU {iou:.4f}")
        if reference.keypoints is not None:
            figures.merge_keypoints(served.keypoints[best], reference.keypoints[index], index)
    return figures
