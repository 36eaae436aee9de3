"""Detectron2's own answer for one image, as the parity rule compares it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Prediction:
    """Detectron2's own answer for one image, in original pixels (the reference)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray | None = None  # bool [N, H, W]
    keypoints: np.ndarray | None = None  # [N, K, 3]
    image_size: tuple[int, int] = (0, 0)
    # A semantic segmentor's logits at the original size, C x H x W ...
    sem_seg: np.ndarray | None = None
    # ... or a panoptic model's segment map (H x W ids) and segments_info.
    panoptic: tuple[np.ndarray, list[dict]] | None = None
    # Detectron2's masks for the boxes of the answer it is compared with, one per served
    # instance, when recorded (``benchmarks.speed.eager.heads_for_boxes``): the mask rule's
    # "same box" comparison.
    masks_for_served: np.ndarray | None = None
    keypoints_for_served: np.ndarray | None = None  # the same, for keypoints

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_instances(cls, instances, image_size: tuple[int, int]) -> Prediction:
        """From a predictor's ``Instances`` on an image of ``image_size`` (height, width)."""
        return cls(
            boxes=instances.pred_boxes.tensor.numpy(),
            scores=instances.scores.numpy(),
            classes=instances.pred_classes.numpy(),
            masks=instances.pred_masks.numpy() if instances.has("pred_masks") else None,
            keypoints=(
                instances.pred_keypoints.numpy() if instances.has("pred_keypoints") else None
            ),
            image_size=tuple(image_size),
        )

    @classmethod
    def from_output(cls, output: dict, image_size: tuple[int, int]) -> Prediction:
        """From a predictor's whole answer: instances, and a semantic or panoptic one."""
        if "instances" in output:
            prediction = cls.from_instances(output["instances"], image_size)
        else:
            empty = np.zeros((0, 4), np.float32)
            prediction = cls(empty, np.zeros(0, np.float32), np.zeros(0, np.int64))
            prediction.image_size = tuple(image_size)
        if "panoptic_seg" in output:
            segment_map, info = output["panoptic_seg"]
            prediction.panoptic = (segment_map.numpy(), info)
        elif "sem_seg" in output:
            prediction.sem_seg = output["sem_seg"].numpy()
        return prediction
