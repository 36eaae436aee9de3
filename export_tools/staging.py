"""Split a Detectron2 model into stages: static parts for OpenVINO, glue for TorchScript.

A Detectron2 R-CNN spends most of its CPU time in convolutions whose shapes follow the image
(backbone, FPN, RPN head) or the number of detections (mask and keypoint heads); the rest
is dynamic glue (anchor decoding, top-k, NMS, ROI pooling) that OpenVINO cannot convert
(``aten::where`` of dynamic rank).  Each part is a small ``nn.Module`` over the model's own
submodules, traced as the whole model is (``export_tools.tracing``); the exporter then
converts the static ones (:data:`OPENVINO_STAGES`) to OpenVINO.  The glue stages call the
same Detectron2 code as the single trace does, so on equal features they give equal results.

Stages of an R-CNN (``image`` is the uint8 CHW input):

==============  ============================================  ==============================
stage           inputs                                        outputs
==============  ============================================  ==============================
normalize       image                                         padded (1 x 3 x H' x W')
backbone        padded                                        features, RPN logits, deltas
roi_heads       image, features, logits, deltas               boxes, scores, classes, pooled
mask_head       mask_pooled (N x 256 x 14 x 14)               mask_logits
mask_select     mask_logits, classes                          pred_masks (N x 1 x 28 x 28)
keypoint_head   keypoint_pooled                               keypoint_logits
keypoints       keypoint_logits, boxes                        pred_keypoints (N x K x 3)
==============  ============================================  ==============================

RetinaNet: ``normalize``, ``backbone`` (with the RetinaNet head) and ``decode``.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from torch import nn

from d2_triton.stages import Stage
from export_tools.errors import UnsupportedModelError
from export_tools.tracing import nms_dispatched_at_run_time

# Stages converted to OpenVINO; every other stage stays TorchScript.
OPENVINO_STAGES = frozenset({"backbone", "mask_head", "keypoint_head"})
# ROI pooling runs torchvision's single-threaded CPU roi_align; this many forked chunks.
ROI_ALIGN_PARTS = 4


@dataclass
class TracedStage:
    """A stage traced, with its plan entry (file names are the writer's business).

    Attributes:
        stage: its entry in the plan (``file`` left empty).
        module: the traced TorchScript module.
        example_inputs: the sample's inputs, to convert and to check with.
    """

    stage: Stage
    module: torch.jit.ScriptModule
    example_inputs: tuple[torch.Tensor, ...]

    @property
    def runtime(self) -> str:
        """Where the stage runs when the plan is served."""
        return self.stage.runtime


def _without(module: nn.Module, *children: str) -> nn.Module:
    """A shallow copy of ``module`` without ``children`` (the original is untouched).

    A stage then saves no weights of the parts another stage runs.
    """
    clone = copy.copy(module)
    clone._modules = {k: v for k, v in module._modules.items() if k not in children}
    return clone


class _Normalize(nn.Module):
    """``preprocess_image`` of Detectron2's meta-architectures, on one image."""

    def __init__(self, model):
        super().__init__()
        self.register_buffer("pixel_mean", model.pixel_mean.clone())
        self.register_buffer("pixel_std", model.pixel_std.clone())
        self.size_divisibility = model.backbone.size_divisibility

    def forward(self, image):
        from detectron2.structures import ImageList

        normalized = (image - self.pixel_mean) / self.pixel_std
        return ImageList.from_tensors([normalized], self.size_divisibility).tensor


class _Backbone(nn.Module):
    """Backbone + FPN + the dense head (RPN or RetinaNet) on the padded batch."""

    def __init__(self, model, feature_names, head_features, head):
        super().__init__()
        self.backbone = model.backbone
        self.head = head
        self.feature_names = feature_names
        self.head_features = head_features

    def forward(self, padded):
        features = self.backbone(padded)
        logits, deltas = self.head([features[name] for name in self.head_features])
        return (*[features[name] for name in self.feature_names], *logits, *deltas)


class _RoiHeads(nn.Module):
    """RPN proposal selection, the box head, and ROI pooling for the mask/keypoint heads."""

    def __init__(self, model, feature_names, levels):
        super().__init__()
        self.rpn = _without(model.proposal_generator, "rpn_head")
        self.roi_heads = _without(model.roi_heads, "mask_head", "keypoint_head")
        self.feature_names = feature_names
        self.levels = levels

    def forward(self, image, *tensors):
        from detectron2.structures import ImageList

        features, logits, deltas = _unflatten(tensors, self.feature_names, self.levels)
        images = ImageList(image[None], [(image.shape[-2], image.shape[-1])])
        rpn = self.rpn
        head_features = [features[name] for name in rpn.in_features]
        anchors = rpn.anchor_generator(head_features)
        logits = [score.permute(0, 2, 3, 1).flatten(1) for score in logits]
        box_dim = rpn.anchor_generator.box_dim
        deltas = [
            delta.view(delta.shape[0], -1, box_dim, delta.shape[-2], delta.shape[-1])
            .permute(0, 3, 4, 1, 2)
            .flatten(1, -2)
            for delta in deltas
        ]
        proposals = rpn.predict_proposals(anchors, logits, deltas, images.image_sizes)
        heads = self.roi_heads
        instances = heads._forward_box(features, proposals)[0]
        boxes = [instances.pred_boxes]
        outputs = [instances.pred_boxes.tensor, instances.scores, instances.pred_classes]
        if heads.mask_on:
            pooled = heads.mask_pooler([features[f] for f in heads.mask_in_features], boxes)
            outputs.append(pooled)
        if heads.keypoint_on:
            pooled = heads.keypoint_pooler([features[f] for f in heads.keypoint_in_features], boxes)
            outputs.append(pooled)
        return tuple(outputs)


class _HeadLayers(nn.Module):
    """The convolution stack of a mask or keypoint head (no per-instance selection)."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, pooled):
        return self.head.layers(pooled)


class _MaskSelect(nn.Module):
    """``mask_rcnn_inference`` for one image: the predicted class's mask, as probabilities.

    Detectron2's own function splits its result per image by a Python ``len``, which a trace
    records as a constant; for one image the split is the identity, so it is left out.
    """

    def forward(self, mask_logits, classes):
        if mask_logits.shape[1] == 1:  # class-agnostic
            return mask_logits.sigmoid()
        indices = torch.arange(mask_logits.shape[0], device=classes.device)
        return mask_logits[indices, classes][:, None].sigmoid()


class _Keypoints(nn.Module):
    """``keypoint_rcnn_inference`` for one image (without its per-image split, as above)."""

    def forward(self, keypoint_logits, boxes):
        from detectron2.structures.keypoints import heatmaps_to_keypoints

        return heatmaps_to_keypoints(keypoint_logits.detach(), boxes.detach())[:, :, [0, 1, 3]]


class _RetinaNetDecode(nn.Module):
    def __init__(self, model, feature_names, levels):
        super().__init__()
        self.model = _without(model, "backbone", "head")
        self.feature_names = feature_names
        self.levels = levels

    def forward(self, image, *tensors):
        from detectron2.structures import ImageList

        features, logits, deltas = _unflatten(tensors, self.feature_names, self.levels)
        images = ImageList(image[None], [(image.shape[-2], image.shape[-1])])
        head_features = [features[name] for name in self.model.head_in_features]
        instances = self.model.forward_inference(images, head_features, [logits, deltas])[0]
        return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def _unflatten(tensors, feature_names, levels):
    count = len(feature_names)
    features = dict(zip(feature_names, tensors[:count], strict=True))
    logits = list(tensors[count : count + levels])
    deltas = list(tensors[count + levels : count + 2 * levels])
    return features, logits, deltas


class _SplitRoiAlign(nn.Module):
    """ROIAlign over chunks of the boxes forked to torch's inter-op threads.

    Each box is pooled independently, so the result is bit-identical to one call; traced,
    the forks run in parallel (eager runs them inline).
    """

    def __init__(self, inner, parts):
        super().__init__()
        self.inner = inner
        self.parts = parts

    def forward(self, features, rois):
        chunks = torch.tensor_split(rois, self.parts)
        futures = [torch.jit.fork(self.inner, features, chunk) for chunk in chunks[1:]]
        first = self.inner(features, chunks[0])
        return torch.cat([first, *[torch.jit.wait(future) for future in futures]])


@contextlib.contextmanager
def roi_align_split(roi_heads, parts: int = ROI_ALIGN_PARTS):
    """Within the block, every ROI pooler of ``roi_heads`` pools in ``parts`` forked chunks."""
    poolers = [
        getattr(roi_heads, name)
        for name in ("box_pooler", "mask_pooler", "keypoint_pooler")
        if getattr(roi_heads, name, None) is not None
    ]
    originals = [list(pooler.level_poolers) for pooler in poolers]
    for pooler, inners in zip(poolers, originals, strict=True):
        for index, inner in enumerate(inners):
            pooler.level_poolers[index] = _SplitRoiAlign(inner, parts)
    try:
        yield
    finally:
        for pooler, inners in zip(poolers, originals, strict=True):
            for index, inner in enumerate(inners):
                pooler.level_poolers[index] = inner


def split_model(model, image: torch.Tensor, fields: list[str]) -> list[TracedStage]:
    """Trace ``model`` as stages on the sample ``image``; the plan's outputs are ``fields``.

    Raises:
        UnsupportedModelError: the model is not an R-CNN with Detectron2's StandardROIHeads
            and an RPN, nor a RetinaNet (export it with ``--exact``).
    """
    from detectron2.modeling import GeneralizedRCNN, RetinaNet
    from detectron2.modeling.proposal_generator import RPN
    from detectron2.modeling.roi_heads import StandardROIHeads

    feature_names = list(model.backbone.output_shape())
    tracer = _Tracer()
    padded = tracer.add("normalize", _Normalize(model), ("image",), ("padded",), image)[0]
    if isinstance(model, GeneralizedRCNN):
        rpn, heads = model.proposal_generator, model.roi_heads
        if type(rpn) is not RPN or type(heads) is not StandardROIHeads:
            raise UnsupportedModelError(
                f"stages need an RPN and StandardROIHeads, not {type(rpn).__name__} and "
                f"{type(heads).__name__}"
            )
        head, head_features = rpn.rpn_head, rpn.in_features
    elif isinstance(model, RetinaNet):
        head, head_features = model.head, model.head_in_features
    else:
        raise UnsupportedModelError(f"no stages for {type(model).__name__}")
    levels = len(head_features)
    dense_names = (
        *feature_names,
        *[f"logits_{i}" for i in range(levels)],
        *[f"deltas_{i}" for i in range(levels)],
    )
    dense = tracer.add(
        "backbone", _Backbone(model, feature_names, head_features, head), ("padded",),
        dense_names, padded,
    )  # fmt: skip
    if isinstance(model, RetinaNet):
        decode = _RetinaNetDecode(model, feature_names, levels)
        tracer.add("decode", decode, ("image", *dense_names), _BOX_FIELDS, image, *dense)
        return tracer.stages
    pooled_names = (["mask_pooled"] if heads.mask_on else []) + (
        ["keypoint_pooled"] if heads.keypoint_on else []
    )
    with roi_align_split(heads):
        found = tracer.add(
            "roi_heads", _RoiHeads(model, feature_names, levels), ("image", *dense_names),
            (*_BOX_FIELDS, *pooled_names), image, *dense,
        )  # fmt: skip
    boxes, classes, pooled = found[0], found[2], dict(zip(pooled_names, found[3:], strict=True))
    if heads.mask_on:
        logits = tracer.add(
            "mask_head", _HeadLayers(heads.mask_head), ("mask_pooled",), ("mask_logits",),
            pooled["mask_pooled"],
        )  # fmt: skip
        tracer.add(
            "mask_select", _MaskSelect(), ("mask_logits", "pred_classes"),
            ("pred_masks",), logits[0], classes,
        )  # fmt: skip
    if heads.keypoint_on:
        logits = tracer.add(
            "keypoint_head", _HeadLayers(heads.keypoint_head), ("keypoint_pooled",),
            ("keypoint_logits",), pooled["keypoint_pooled"],
        )  # fmt: skip
        tracer.add(
            "keypoints", _Keypoints(), ("keypoint_logits", "pred_boxes"),
            ("pred_keypoints",), logits[0], boxes,
        )  # fmt: skip
    missing = set(fields) - {name for stage in tracer.stages for name in stage.stage.outputs}
    if missing:
        raise UnsupportedModelError(f"the stages do not produce {sorted(missing)}")
    return tracer.stages


_BOX_FIELDS = ("pred_boxes", "scores", "pred_classes")


class _Tracer:
    """Traces stages in order, feeding each the sample outputs of the ones before."""

    def __init__(self):
        self.stages: list[TracedStage] = []

    def add(self, name, module, inputs, outputs, *example) -> tuple[torch.Tensor, ...]:
        module = module.eval()
        with torch.no_grad(), nms_dispatched_at_run_time():
            traced = torch.jit.trace(module, example, check_trace=False)
            results = traced(*example)
        results = results if isinstance(results, tuple) else (results,)
        runtime = "openvino" if name in OPENVINO_STAGES else "torchscript"
        stage = Stage(name, runtime, "", tuple(inputs), tuple(outputs))
        self.stages.append(TracedStage(stage, traced, tuple(example)))
        return results
