"""Split a Detectron2 model into stages: static parts for OpenVINO, glue for TorchScript.

A Detectron2 R-CNN spends most of its CPU time in convolutions whose shapes follow the image
(backbone, FPN, RPN head) or the number of detections (mask and keypoint heads); the rest
is dynamic glue (anchor decoding, top-k, NMS, ROI pooling) that OpenVINO cannot convert
(``aten::where`` of dynamic rank).  Each part is a small ``nn.Module`` over the model's own
submodules (``export_tools.trace.modules`` and ``roi_heads``), traced as the whole model is
(``export_tools.trace.tracing``); the exporter then converts the static ones
(:data:`OPENVINO_STAGES`) to OpenVINO.  The glue stages call the
same Detectron2 code as the single trace does, so on equal features they give equal results.

Stages of an R-CNN (``image`` is the uint8 CHW input):

==============  ============================================  ==============================
stage           inputs                                        outputs
==============  ============================================  ==============================
normalize       image                                         padded (1 x 3 x H' x W')
backbone        padded                                        features, RPN logits, deltas
proposals       image, features, logits, deltas               proposal boxes, box_pooled
box_head        box_pooled (R x 256 x 7 x 7)                  class_logits, box_deltas
box_select      image, proposal boxes, logits, deltas, feat.  boxes, scores, classes, pooled
mask_head       mask_pooled (N x 256 x 14 x 14)               mask_logits
mask_select     mask_logits, classes                          pred_masks (N x 1 x 28 x 28)
keypoint_head   keypoint_pooled                               keypoint_logits
keypoints       keypoint_logits, boxes                        pred_keypoints (N x K x 3)
==============  ============================================  ==============================

Cascade R-CNN: ``box_head`` is its first stage's head; then, per later stage k,
``cascade_refine_k`` (the boxes stage k-1 predicts, clipped and pooled again) and
``box_head_k``; its ``box_select`` averages the stages' scores.

RetinaNet: ``normalize``, ``backbone`` (with the RetinaNet head) and ``decode``.

Panoptic FPN: an R-CNN's stages and ``sem_seg_head`` (OpenVINO: the semantic head's
layers on the features, its logits the ``sem_seg`` output).  A semantic segmentor:
``normalize``, ``backbone`` (without a dense head) and ``sem_seg_head``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from d2_triton.serving.stages import Stage
from export_tools.errors import UnsupportedModelError
from export_tools.trace.modules import Backbone, Normalize, RetinaNetDecode, SemSegHead
from export_tools.trace.roi_align import bag_roi_pooling
from export_tools.trace.roi_heads import (
    BoxHead,
    BoxSelect,
    CascadeRefine,
    CascadeSelect,
    HeadLayers,
    Keypoints,
    MaskSelect,
    Proposals,
)
from export_tools.trace.tracing import traceable

# Stages converted to OpenVINO (Cascade R-CNN's later box heads: box_head_1, ...); every
# other stage stays TorchScript.
OPENVINO_STAGES = frozenset({"backbone", "box_head", "mask_head", "keypoint_head", "sem_seg_head"})


def runs_on_openvino(stage: str) -> bool:
    """Whether the stage named ``stage`` is converted to OpenVINO."""
    return stage in OPENVINO_STAGES or stage.startswith("box_head_")


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


def split_model(model, image: torch.Tensor, fields: list[str]) -> list[TracedStage]:
    """Trace ``model`` as stages on the sample ``image``; the plan's outputs are ``fields``.

    Raises:
        UnsupportedModelError: the model is not an R-CNN with Detectron2's StandardROIHeads
            and an RPN, nor a RetinaNet (export it with ``--exact``).
    """
    from detectron2.modeling import RetinaNet, SemanticSegmentor

    feature_names = list(model.backbone.output_shape())
    semantic_only = isinstance(model, SemanticSegmentor)
    head, head_features = (None, []) if semantic_only else dense_head(model)
    tracer = _Tracer()
    padded = tracer.add("normalize", Normalize(model), ("image",), ("padded",), image)[0]
    levels = len(head_features)
    dense_names = (
        *feature_names,
        *[f"logits_{i}" for i in range(levels)],
        *[f"deltas_{i}" for i in range(levels)],
    )
    backbone = Backbone(model, feature_names, head_features, head)
    dense = tracer.add("backbone", backbone, ("padded",), dense_names, padded)
    if hasattr(model, "sem_seg_head"):
        trace_sem_seg_head(
            tracer, model.sem_seg_head, dict(zip(feature_names, dense, strict=False))
        )
    if isinstance(model, RetinaNet):
        decode = RetinaNetDecode(model, feature_names, levels)
        tracer.add("decode", decode, ("image", *dense_names), _BOX_FIELDS, image, *dense)
    elif not semantic_only:
        trace_roi_heads(tracer, model, feature_names, (image, *dense), dense_names)
    missing = set(fields) - {name for stage in tracer.stages for name in stage.stage.outputs}
    if missing:
        raise UnsupportedModelError(f"the stages do not produce {sorted(missing)}")
    return tracer.stages


def trace_sem_seg_head(tracer, head, features: dict[str, torch.Tensor]) -> None:
    """The semantic head's layers on the features it reads: the ``sem_seg`` logits."""
    inputs = tuple(head.in_features)
    tracer.add(
        "sem_seg_head", SemSegHead(head), inputs, ("sem_seg",), *[features[n] for n in inputs]
    )


def dense_head(model) -> tuple[torch.nn.Module, list[str]]:
    """The dense head that runs on every feature level, and the levels it reads.

    Raises:
        UnsupportedModelError: neither an R-CNN with an RPN and StandardROIHeads nor RetinaNet.
    """
    from detectron2.modeling import GeneralizedRCNN, RetinaNet
    from detectron2.modeling.proposal_generator import RPN
    from detectron2.modeling.roi_heads import CascadeROIHeads, StandardROIHeads

    if isinstance(model, RetinaNet):
        return model.head, model.head_in_features
    if not isinstance(model, GeneralizedRCNN):
        raise UnsupportedModelError(f"no stages for {type(model).__name__}")
    rpn, heads = model.proposal_generator, model.roi_heads
    if type(rpn) is not RPN or type(heads) not in (StandardROIHeads, CascadeROIHeads):
        raise UnsupportedModelError(
            f"stages need an RPN and StandardROIHeads or CascadeROIHeads, not "
            f"{type(rpn).__name__} and {type(heads).__name__}"
        )
    return rpn.rpn_head, rpn.in_features


def trace_roi_heads(tracer, model, feature_names, inputs, dense_names) -> None:
    """The R-CNN's ROI heads: proposals, the box head, box selection, mask and keypoint heads.

    The box, mask and keypoint heads are stages of their own (OpenVINO); the rest is glue.
    """
    heads = model.roi_heads
    image, features = inputs[0], inputs[1 : 1 + len(feature_names)]
    with bag_roi_pooling(heads):
        levels = (len(dense_names) - len(feature_names)) // 2  # logits_i and deltas_i
        proposal_boxes, box_pooled = tracer.add(
            "proposals",
            Proposals(model, feature_names, levels),
            ("image", *dense_names),
            ("proposal_boxes", "box_pooled"),
            *inputs,
        )
        if isinstance(heads.box_head, torch.nn.ModuleList):  # Cascade R-CNN
            proposed = (proposal_boxes, box_pooled)
            found = trace_cascade(tracer, model, feature_names, (image, *features), proposed)
        else:
            predicted = tracer.add(
                "box_head",
                BoxHead(heads.box_head, heads.box_predictor),
                ("box_pooled",),
                ("class_logits", "box_deltas"),
                box_pooled,
            )
            found = tracer.add(
                "box_select",
                BoxSelect(model, feature_names),
                ("image", "proposal_boxes", "class_logits", "box_deltas", *feature_names),
                (*_BOX_FIELDS, *pooled_names(heads)),
                image,
                proposal_boxes,
                *predicted,
                *features,
            )
    boxes, classes = found[0], found[2]
    pooled = dict(zip(pooled_names(heads), found[3:], strict=True))
    if heads.mask_on:
        mask_head = HeadLayers(heads.mask_head)
        logits = tracer.add(
            "mask_head", mask_head, ("mask_pooled",), ("mask_logits",), pooled["mask_pooled"]
        )
        select_inputs = ("mask_logits", "pred_classes")
        tracer.add("mask_select", MaskSelect(), select_inputs, ("pred_masks",), logits[0], classes)
    if heads.keypoint_on:
        keypoint_head = HeadLayers(heads.keypoint_head)
        logits = tracer.add(
            "keypoint_head",
            keypoint_head,
            ("keypoint_pooled",),
            ("keypoint_logits",),
            pooled["keypoint_pooled"],
        )
        keypoint_inputs = ("keypoint_logits", "pred_boxes")
        tracer.add("keypoints", Keypoints(), keypoint_inputs, ("pred_keypoints",), logits[0], boxes)


def trace_cascade(tracer, model, feature_names, inputs, proposed):
    """Cascade R-CNN's box stages, traced; returns the box selection's sample outputs.

    Each stage's box head runs on OpenVINO; between stages, the boxes a stage predicts are
    pooled again for the next (glue); the selection reads every stage's scores.

    Args:
        tracer: the stages traced so far.
        model: the Cascade R-CNN.
        feature_names: the backbone's feature maps, in the order of its outputs.
        inputs: the image and the feature maps.
        proposed: the ``proposals`` stage's boxes and pooled features.

    Stage k's tensors are named with the suffix ``_k`` (stage 0: none, as a standard
    R-CNN's, so that its stage names are the same).
    """
    heads = model.roi_heads
    image, features = inputs[0], inputs[1:]
    boxes, pooled = proposed
    logits, deltas = [], None
    for stage in range(heads.num_cascade_stages):
        suffix = _suffix(stage)
        if stage:
            before = _suffix(stage - 1)
            names = (f"proposal_boxes{before}", f"class_logits{before}", f"box_deltas{before}")
            boxes, pooled = tracer.add(
                f"cascade_refine{suffix}",
                CascadeRefine(model, feature_names, stage - 1),
                ("image", *names, *feature_names),
                (f"proposal_boxes{suffix}", f"box_pooled{suffix}"),
                *(image, boxes, logits[-1], deltas, *features),
            )
        stage_logits, deltas = tracer.add(
            f"box_head{suffix}",
            BoxHead(heads.box_head[stage], heads.box_predictor[stage]),
            (f"box_pooled{suffix}",),
            (f"class_logits{suffix}", f"box_deltas{suffix}"),
            pooled,
        )
        logits.append(stage_logits)
    logit_names = [f"class_logits{_suffix(stage)}" for stage in range(len(logits))]
    return tracer.add(
        "box_select",
        CascadeSelect(model, feature_names),
        ("image", f"proposal_boxes{suffix}", *logit_names, f"box_deltas{suffix}", *feature_names),
        (*_BOX_FIELDS, *pooled_names(heads)),
        *(image, boxes, *logits, deltas, *features),
    )


def _suffix(stage: int) -> str:
    return f"_{stage}" if stage else ""


def pooled_names(heads) -> list[str]:
    """The ROI poolings box selection hands the mask and keypoint heads."""
    return ["mask_pooled"] * heads.mask_on + ["keypoint_pooled"] * heads.keypoint_on


_BOX_FIELDS = ("pred_boxes", "scores", "pred_classes")


class _Tracer:
    """Traces stages in order, feeding each the sample outputs of the ones before."""

    def __init__(self):
        self.stages: list[TracedStage] = []

    def add(self, name, module, inputs, outputs, *example) -> tuple[torch.Tensor, ...]:
        module = module.eval()
        with torch.no_grad(), traceable():
            traced = torch.jit.trace(module, example, check_trace=False)
            results = traced(*example)
        results = results if isinstance(results, tuple) else (results,)
        runtime = "openvino" if runs_on_openvino(name) else "torchscript"
        stage = Stage(name, runtime, "", tuple(inputs), tuple(outputs))
        self.stages.append(TracedStage(stage, traced, tuple(example)))
        return results
