"""Trace a Detectron2 model to TorchScript, as Detectron2's own exporter does, and check it.

The model is traced as ``tools/deploy/export_model.py --export-method tracing`` does
(``TracingAdapter`` + ``torch.jit.trace``, R-CNN ``inference(do_postprocess=False)``), with
the image as uint8 CHW, on the CPU, so the file carries no device.  The final
``detector_postprocess`` (rescaling, mask pasting) runs in the ``postprocess`` model instead.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from d2_triton import carried, names
from d2_triton.serving import torchscript
from d2_triton.vision.imaging import resize_shortest_edge, to_model_layout
from export_tools.errors import TraceMismatchError, UnsupportedModelError
from export_tools.repository import configs
from export_tools.trace.modules import Normalize


def synthetic_sample_image(height: int = 480, width: int = 640) -> np.ndarray:
    """A deterministic BGR test card; tracing records ops, so its content barely matters."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([cols * 255 // width, rows * 255 // height, (rows + cols) % 256], axis=-1)
    image[height // 4 : height // 2, width // 4 : width // 2] = (40, 200, 90)
    return image.astype(np.uint8)


def load_sample_image(path: Path | None) -> np.ndarray:
    """The image to trace with: ``path`` decoded as preprocess decodes, or the test card."""
    if path is None:
        return synthetic_sample_image()
    from d2_triton.vision.imaging import decode_image

    return decode_image(path.read_bytes())


def model_input(config, image_bgr: np.ndarray) -> torch.Tensor:
    """Exactly what the `preprocess` model produces for this image.

    Args:
        config: the model's ``export_tools.detector_config.DetectorConfig``.
        image_bgr: the decoded image, H x W x 3 uint8.
    """
    resized = resize_shortest_edge(image_bgr, config.min_size_test, config.max_size_test)
    return torch.from_numpy(to_model_layout(resized, config.input_format))


# The semantic segmentation head's logits (C x h x w, at the head's stride): not an
# Instances field, exported after the instance fields when the model has such a head.
SEM_SEG = "sem_seg"


@dataclass
class RawOutputs:
    """What the detector computes for one image: instances and/or semantic logits.

    Attributes:
        instances: ``Instances`` in resized-image coordinates, before
            ``detector_postprocess`` (None for a semantic segmentor).
        sem_seg: the semantic head's logits before its upsampling to the padded image
            (``SemSegFPNHead.layers``), C x h x w; None without a semantic head.
    """

    instances: Any = None
    sem_seg: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.instances is None else len(self.instances)

    def has(self, field: str) -> bool:
        """Whether the model produces ``field``."""
        if field == SEM_SEG:
            return self.sem_seg is not None
        return self.instances is not None and self.instances.has(field)

    def tensor(self, field: str) -> torch.Tensor:
        """The tensor of one field (``pred_boxes``: its box tensor)."""
        if field == SEM_SEG:
            return self.sem_seg
        value = self.instances.get(field)
        return value.tensor if field == "pred_boxes" else value


def raw_outputs(model, image: torch.Tensor) -> RawOutputs:
    """The model's outputs before Detectron2's final postprocessing, for one image.

    R-CNNs: ``GeneralizedRCNN.inference(do_postprocess=False)``, as Detectron2's exporter.
    Dense detectors (RetinaNet, FCOS): ``DenseDetector.forward`` without its final
    ``detector_postprocess``.  Panoptic FPN: its R-CNN's instances and its semantic head's
    logits; a semantic segmentor: the logits.  Each is the same Detectron2 calls its
    ``forward`` makes, stopped where the served ``postprocess`` model takes over.
    """
    from detectron2.modeling import GeneralizedRCNN, PanopticFPN, SemanticSegmentor
    from detectron2.modeling.meta_arch.dense_detector import DenseDetector

    inputs = [{"image": image}]
    if isinstance(model, PanopticFPN):
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features, None)
        instances, _ = model.roi_heads(images, features, proposals, None)
        return RawOutputs(instances[0], model.sem_seg_head.layers(features)[0])
    if isinstance(model, GeneralizedRCNN):
        return RawOutputs(model.inference(inputs, do_postprocess=False)[0])
    if isinstance(model, SemanticSegmentor):
        normalized = Normalize(model)(image)
        return RawOutputs(sem_seg=model.sem_seg_head.layers(model.backbone(normalized))[0])
    if isinstance(model, DenseDetector):
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        features = [features[name] for name in model.head_in_features]
        predictions = model.head(features)
        return RawOutputs(model.forward_inference(images, features, predictions)[0])
    raise UnsupportedModelError(f"unsupported meta-architecture {type(model).__name__}")


def describe_outputs(raw: RawOutputs) -> tuple[list[str], configs.ModelOutputs]:
    """Which fields the model produced (``raw_outputs``), and their shapes."""
    fields = [field for field in names.DETECTOR_OUTPUTS if raw.has(field)]
    instances = raw.instances
    outputs = configs.ModelOutputs(
        has_masks="pred_masks" in fields,
        mask_resolution=instances.pred_masks.shape[-1] if "pred_masks" in fields else 0,
        has_instances=instances is not None,
        sem_seg_classes=0 if raw.sem_seg is None else raw.sem_seg.shape[0],
        carried={
            kind.name: tuple(instances.get(kind.field).shape[1:])
            for kind in carried.CARRIED
            if kind.field in fields
        },
    )
    return fields, outputs


@contextlib.contextmanager
def nms_dispatched_at_run_time():
    """Trace with torchvision's ``batched_nms`` scripted, so it keeps eager mode's choice.

    Eager ``batched_nms`` picks its algorithm by size and device (a per-class loop above
    4000 box coordinates on CPU, one NMS over class-offset boxes below).  Under tracing it
    always takes the offset trick, whose large offsets round box coordinates in float32 and
    so flip IoUs that sit on the threshold: the traced model then keeps or drops different
    boxes than Detectron2 does.  Scripted, torchvision's own function is recorded with its
    branch intact and decides at run time, exactly as eager Detectron2 does.
    """
    import torchvision.ops.boxes as box_ops

    original = box_ops.batched_nms
    box_ops.batched_nms = torch.jit.script(original)
    try:
        yield
    finally:
        box_ops.batched_nms = original


@contextlib.contextmanager
def gradient_scaling_skipped():
    """Trace Cascade R-CNN with its gradient-scaling function left out, as inference does.

    Detectron2 v0.6's ``CascadeROIHeads._run_stage`` applies ``_ScaleGradient`` (a Python
    autograd function that is the identity forward and scales gradients backward) even at
    inference, and ``torch.jit.trace`` cannot record a Python function call.  Later
    Detectron2 applies it only in training; so does this trace.  The class is replaced in
    its module for the duration only.
    """
    from detectron2.modeling.roi_heads import cascade_rcnn

    class _Identity:
        @staticmethod
        def apply(features: torch.Tensor, scale: float) -> torch.Tensor:
            return features

    original = cascade_rcnn._ScaleGradient
    cascade_rcnn._ScaleGradient = _Identity
    try:
        yield
    finally:
        cascade_rcnn._ScaleGradient = original


@contextlib.contextmanager
def deform_conv_unwrapped():
    """Trace deformable convolution (DCNv1) as the call Detectron2 makes on the CPU.

    On a CPU tensor with one deformable group, Detectron2 v0.6's ``_DeformConv.forward`` is
    ``torchvision.ops.deform_conv2d(input, offset, weight, stride, padding, dilation)``,
    wrapped in a Python autograd function, which ``torch.jit.trace`` cannot record.  For the
    trace the module's ``deform_conv`` is that torchvision call itself; any other case
    (several deformable groups, which Detectron2 runs only on CUDA) still goes to
    Detectron2's function and fails as it does there.
    """
    from detectron2.layers import deform_conv as module
    from torchvision.ops import deform_conv2d

    original = module.deform_conv

    def unwrapped(
        input, offset, weight, stride, padding, dilation, groups, deformable_groups, *rest
    ):
        if input.is_cuda or deformable_groups != 1:
            return original(
                input, offset, weight, stride, padding, dilation, groups, deformable_groups, *rest
            )
        return deform_conv2d(
            input, offset, weight, stride=stride, padding=padding, dilation=dilation
        )

    module.deform_conv = unwrapped
    try:
        yield
    finally:
        module.deform_conv = original


@contextlib.contextmanager
def traceable():
    """Every change a Detectron2 model needs to be traced as it runs eagerly (see each).

    Tracing is TorchScript on purpose: its deprecation and tracer warnings are not shown.
    """
    with (
        torchscript.on_purpose(tracing=True),
        nms_dispatched_at_run_time(),
        gradient_scaling_skipped(),
        deform_conv_unwrapped(),
    ):
        yield


def trace(model, image: torch.Tensor, fields: list[str]) -> torch.jit.ScriptModule:
    """TracingAdapter + torch.jit.trace; outputs are the ``fields`` tensors, in order."""
    from detectron2.export.flatten import TracingAdapter

    def inference(traced_model, inputs):
        raw = raw_outputs(traced_model, inputs[0]["image"])
        return tuple(raw.tensor(field) for field in fields)

    adapter = TracingAdapter(model, [{"image": image}], inference)
    with torch.no_grad(), traceable():
        return torch.jit.trace(adapter, (image,), check_trace=False)


def verify_trace(traced, image: torch.Tensor, fields: list[str], eager) -> None:
    """The traced file must give ``eager`` (the eager model's ``RawOutputs`` on ``image``)."""
    with torch.no_grad():
        outputs = traced(image)
    for field, output in zip(fields, outputs, strict=True):
        expected = eager.tensor(field)
        same = output.shape == expected.shape and torch.allclose(
            output.float(), expected.float(), atol=1e-4
        )
        if not same:
            raise TraceMismatchError(f"traced model disagrees with eager Detectron2 on {field}")
