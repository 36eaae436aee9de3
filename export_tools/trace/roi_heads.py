"""The modules of an R-CNN's stages past the backbone: proposals, ROI heads, Cascade R-CNN.

As in ``export_tools.trace.modules`` (which has the shared ones), each wraps the model's own
submodules and Detectron2's own functions; tensor shapes are for one image.
"""

from __future__ import annotations

import torch
from torch import nn

from export_tools.trace.modules import feature_maps, unflatten, without


def propose(rpn, image, features, logits, deltas):
    """The RPN's proposals for one image (Detectron2's ``RPN.forward`` past its head).

    Args:
        rpn: the proposal generator (its head not needed).
        image: the uint8 3 x H x W input (only its size is read: proposals are clipped to
            it, as Detectron2 clips them to ``images.image_sizes``).
        features: the feature maps by name (``unflatten``).
        logits: the RPN head's objectness logits per level.
        deltas: the RPN head's anchor deltas per level.
    """
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
    return rpn.predict_proposals(anchors, logits, deltas, [(image.shape[-2], image.shape[-1])])


class Proposals(nn.Module):
    """RPN proposal selection and the box head's ROI pooling (``_forward_box``'s first half)."""

    def __init__(self, model, feature_names, levels):
        super().__init__()
        self.rpn = without(model.proposal_generator, "rpn_head")
        self.box_pooler = model.roi_heads.box_pooler
        self.box_in_features = model.roi_heads.box_in_features
        self.feature_names = feature_names
        self.levels = levels

    def forward(self, image, *tensors):
        """Proposal boxes (R x 4) and their pooled features (R x C x S x S).

        Args:
            image: the uint8 3 x H x W input (for its size).
            tensors: the ``Backbone`` stage's outputs, in its order.
        """
        features, logits, deltas = unflatten(tensors, self.feature_names, self.levels)
        proposals = propose(self.rpn, image, features, logits, deltas)
        boxes = [proposal.proposal_boxes for proposal in proposals]
        pooled = pool_boxes(self.box_pooler, self.box_in_features, features, boxes)
        return boxes[0].tensor, pooled


class BoxHead(nn.Module):
    """A box head's layers and its predictor: class logits and box deltas per proposal.

    Args:
        box_head: the head's layers (for Cascade R-CNN, one stage's).
        box_predictor: the matching ``FastRCNNOutputLayers``.
    """

    def __init__(self, box_head, box_predictor):
        super().__init__()
        self.box_head = box_head
        self.box_predictor = box_predictor

    def forward(self, pooled):
        """Args: pooled (R x C x S x S).  Returns class logits (R x K+1), deltas (R x 4K)."""
        return self.box_predictor(self.box_head(pooled))


def pool_boxes(pooler, in_features, features, boxes):
    """``pooler`` over the features named ``in_features`` for ``boxes`` (a list of Boxes)."""
    return pooler([features[name] for name in in_features], boxes)


class CascadeRefine(nn.Module):
    """Between Cascade R-CNN stages k and k+1: stage k's boxes, pooled again.

    The boxes stage k predicts, clipped, are stage k+1's proposals
    (``CascadeROIHeads._create_proposals_from_boxes``).

    Args:
        model: the R-CNN; ``stage``: the index k of the stage whose outputs are refined.
    """

    def __init__(self, model, feature_names, stage: int):
        super().__init__()
        heads = model.roi_heads
        self.box_predictor = heads.box_predictor[stage]
        self.box_pooler = heads.box_pooler
        self.box_in_features = heads.box_in_features
        self.feature_names = feature_names

    def forward(self, image, proposal_boxes, class_logits, box_deltas, *maps):
        """The next stage's proposal boxes (R x 4) and their pooled features.

        Arguments as :class:`BoxSelect`'s.
        """
        from detectron2.structures import Boxes

        size = (image.shape[-2], image.shape[-1])
        predicted = predict_boxes(self.box_predictor, box_deltas, proposal_boxes)
        boxes = Boxes(predicted.detach())
        boxes.clip(size)
        features = feature_maps(self.feature_names, maps)
        pooled = pool_boxes(self.box_pooler, self.box_in_features, features, [boxes])
        return boxes.tensor, pooled


def predict_boxes(predictor, box_deltas, proposal_boxes):
    """``FastRCNNOutputLayers.predict_boxes`` for one image.

    Detectron2's splits its result per image by a Python ``len`` of the proposals, which a
    trace records as a constant: served on an image that keeps fewer proposals (a
    single-level RPN's NMS, e.g. DC5, often does) the split fails.  For one image it is the
    identity, so it is left out; so is ``predict_probs``'s (:func:`predict_probs`).
    """
    return predictor.box2box_transform.apply_deltas(box_deltas, proposal_boxes)


def predict_probs(class_logits):
    """``FastRCNNOutputLayers.predict_probs`` for one image (see :func:`predict_boxes`)."""
    return torch.nn.functional.softmax(class_logits, dim=-1)


class BoxSelect(nn.Module):
    """``_forward_box``'s second half (decode, score cut, NMS, top-k).

    Then the ROI pooling of the mask and keypoint heads on the boxes kept.
    """

    def __init__(self, model, feature_names):
        super().__init__()
        self.roi_heads = without(model.roi_heads, "box_head", "mask_head", "keypoint_head")
        self.feature_names = feature_names

    def forward(self, image, proposal_boxes, class_logits, box_deltas, *maps):
        """Boxes (N x 4), scores (N), classes (N), then the pooled mask/keypoint features.

        Args:
            image: the uint8 3 x H x W input (for its size).
            proposal_boxes: ``Proposals``' boxes (R x 4).
            class_logits: ``BoxHead``'s class logits (R x K+1).
            box_deltas: ``BoxHead``'s box deltas (R x 4K).
            maps: the features (channels-last) named ``feature_names``, in that order.
        """
        from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference

        size = (image.shape[-2], image.shape[-1])
        predictor = self.roi_heads.box_predictor
        # FastRCNNOutputLayers.inference, for one image.
        boxes = predict_boxes(predictor, box_deltas, proposal_boxes)
        scores = predict_probs(class_logits)
        thresholds = (
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
        )
        instances = fast_rcnn_inference([boxes], [scores], [size], *thresholds)[0][0]
        return self.roi_heads_outputs(instances, maps)

    def roi_heads_outputs(self, instances, maps) -> tuple[torch.Tensor, ...]:
        """The kept instances' fields, then their mask and keypoint poolings."""
        heads = self.roi_heads
        features = feature_maps(self.feature_names, maps)
        boxes = [instances.pred_boxes]
        outputs = [instances.pred_boxes.tensor, instances.scores, instances.pred_classes]
        if heads.mask_on:
            outputs.append(pool_boxes(heads.mask_pooler, heads.mask_in_features, features, boxes))
        if heads.keypoint_on:
            pooler, names = heads.keypoint_pooler, heads.keypoint_in_features
            outputs.append(pool_boxes(pooler, names, features, boxes))
        return tuple(outputs)


class CascadeSelect(BoxSelect):
    """``CascadeROIHeads._forward_box`` at inference, past the last stage's head.

    Scores averaged over the stages, the last stage's boxes, then as :class:`BoxSelect`.
    """

    def __init__(self, model, feature_names):
        super().__init__(model, feature_names)
        self.stages = model.roi_heads.num_cascade_stages

    def forward(self, image, proposal_boxes, *tensors):
        """Returns as :class:`BoxSelect`.

        Args:
            image: the uint8 3 x H x W input (for its size).
            proposal_boxes: the last stage's proposal boxes (R x 4).
            tensors: each stage's class logits, in stage order; the last stage's box
                deltas; the feature maps.

        """
        from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference

        count = self.stages
        size = (image.shape[-2], image.shape[-1])
        logits, deltas, maps = tensors[:count], tensors[count], tensors[count + 1 :]
        probabilities = [predict_probs(stage_logits) for stage_logits in logits]
        scores = sum(probabilities) * (1.0 / count)  # as Detectron2 sums and scales them
        last = self.roi_heads.box_predictor[count - 1]
        boxes = predict_boxes(last, deltas, proposal_boxes)
        thresholds = (last.test_score_thresh, last.test_nms_thresh, last.test_topk_per_image)
        instances = fast_rcnn_inference([boxes], [scores], [size], *thresholds)[0][0]
        return self.roi_heads_outputs(instances, maps)


class HeadLayers(nn.Module):
    """The convolution stack of a mask or keypoint head (no per-instance selection)."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, pooled):
        """Args: pooled (N x C x S x S ROI features).  Returns the head's logits per class."""
        return self.head.layers(pooled)


class MaskSelect(nn.Module):
    """``mask_rcnn_inference`` for one image: the predicted class's mask, as probabilities.

    Detectron2's own function splits its result per image by a Python ``len``, which a trace
    records as a constant; for one image the split is the identity, so it is left out.
    """

    def forward(self, mask_logits, classes):
        """Args: mask_logits (N x K x M x M), classes (N).  Returns N x 1 x M x M in [0, 1]."""
        if mask_logits.shape[1] == 1:  # class-agnostic
            return mask_logits.sigmoid()
        indices = torch.arange(mask_logits.shape[0], device=classes.device)
        return mask_logits[indices, classes][:, None].sigmoid()


class Keypoints(nn.Module):
    """``keypoint_rcnn_inference`` for one image (without its per-image split, as above)."""

    def forward(self, keypoint_logits, boxes):
        """Args: heatmap logits (N x K x S x S), boxes (N x 4).  Returns N x K x (x, y, logit)."""
        from detectron2.structures.keypoints import heatmaps_to_keypoints

        return heatmaps_to_keypoints(keypoint_logits.detach(), boxes.detach())[:, :, [0, 1, 3]]
