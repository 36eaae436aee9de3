"""The per-instance outputs a detector carries to the client beside its boxes: one entry each.

Boxes, scores and classes every instance model has, and masks take a road of their own
(pasted and encoded by postprocess).  A *carried* output is any other array with one row per
instance (Keypoint R-CNN's keypoints today).  Everything between the model and the client
reads this table, so a new kind is one entry here, the code that computes it (its stage in
``export_tools/trace``) and its drawing (``d2_triton.client.render``, the page):

- the exporter exports the field when the traced model returns it, and writes its shape
  (``[-1, *per-instance shape]``, from the trace) into the detector's and the ensemble's
  configs (``export_tools.repository.configs``);
- postprocess reads it under its ``name``, selects the same instances as the boxes and, for
  ``points``, scales x and y from the resized image to the original one (unclipped, as
  Detectron2's ``detector_postprocess`` does with keypoints), and returns it under that name
  (``d2_triton.vision.detections``, ``d2_triton.serving.steps``);
- the client, the CLI and the gateway carry it into each detection's JSON under ``name``
  (``d2_triton.client.results``, ``d2_triton.gateway.interface``).

The contract tier: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CarriedOutput:
    """One kind of per-instance output, from the traced model's field to the client's JSON."""

    field: str  # the Detectron2 ``Instances`` field the traced model returns
    name: str  # its tensor: the detector's output, postprocess's input and output, JSON key
    points: bool  # whether each row's last axis starts with x, y in image pixels
    rank: int  # axes of one instance's value (keypoints: 2, K x 3)
    description: str  # one instance's value, for the gateway's schema
    dtype: str = "float32"  # numpy's name of its type, in every tensor that carries it


KEYPOINTS = CarriedOutput(
    field="pred_keypoints",
    name="keypoints",
    points=True,
    rank=2,
    description="[x, y, logit] per keypoint",
)

# Every carried kind, in the order the detector returns them.
CARRIED = (KEYPOINTS,)
BY_NAME = {kind.name: kind for kind in CARRIED}
