"""The small ``nn.Module``s the stages of a split Detectron2 model are traced from.

Those of an R-CNN's proposals and ROI heads are in ``export_tools.trace.roi_heads``.  Each
wraps the model's own submodules and Detectron2's own functions, so a stage computes what the
same lines of the single trace compute (``export_tools.trace.split`` splits and traces).
Tensor shapes are for one image: ``image`` is uint8 3 x H x W, ``padded`` 1 x 3 x H' x W'
(normalized and padded to the backbone's size divisibility), features 1 x C x h x w.

The backbone's feature maps cross from its stage to the next ones channels-last
(1 x h x w x C): what the ROI pooling reads (``export_tools.trace.roi_align``).  OpenVINO
computes in a blocked layout and reorders its outputs anyway, so it writes them channels-last
at no extra cost, where a transpose in the glue cost ~25 ms per map and call at 800 px.  The
stages that read them take them back as 1 x C x h x w views (:func:`feature_maps`), no copy.
"""

from __future__ import annotations

import copy

from torch import nn


def without(module: nn.Module, *children: str) -> nn.Module:
    """A shallow copy of ``module`` without ``children`` (the original is untouched).

    A stage then saves no weights of the parts another stage runs.
    """
    clone = copy.copy(module)
    clone._modules = {k: v for k, v in module._modules.items() if k not in children}
    return clone


class Normalize(nn.Module):
    """``preprocess_image`` of Detectron2's meta-architectures, on one image."""

    def __init__(self, model):
        super().__init__()
        self.register_buffer("pixel_mean", model.pixel_mean.clone())
        self.register_buffer("pixel_std", model.pixel_std.clone())
        self.size_divisibility = model.backbone.size_divisibility

    def forward(self, image):
        """Args: image (uint8 3 x H x W).  Returns the padded batch (float 1 x 3 x H' x W')."""
        from detectron2.structures import ImageList

        normalized = (image - self.pixel_mean) / self.pixel_std
        return ImageList.from_tensors([normalized], self.size_divisibility).tensor


class Backbone(nn.Module):
    """Backbone + FPN + the dense head on the padded batch.

    The head is an RPN or RetinaNet's; a semantic segmentor has none.
    """

    def __init__(self, model, feature_names, head_features, head):
        super().__init__()
        self.backbone = model.backbone
        self.head = head
        self.feature_names = feature_names
        self.head_features = head_features

    def forward(self, padded):
        """The features named ``feature_names`` (channels-last), then the head's outputs.

        The head's: its logits per level, then its deltas per level.

        Args:
            padded: the normalized, padded batch (1 x 3 x H' x W').
        """
        features = self.backbone(padded)
        named = [features[name].permute(0, 2, 3, 1) for name in self.feature_names]
        if self.head is None:
            return tuple(named)
        logits, deltas = self.head([features[name] for name in self.head_features])
        return (*named, *logits, *deltas)


class SemSegHead(nn.Module):
    """The semantic head's layers (``SemSegFPNHead.layers``), before its final upsampling."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, *features):
        """The logits (C x h x w) from the feature maps named ``head.in_features``."""
        return self.head.layers(feature_maps(self.head.in_features, features))[0]


class RetinaNetDecode(nn.Module):
    """RetinaNet's ``forward_inference``: anchors, decoding, per-level top-k, NMS."""

    def __init__(self, model, feature_names, levels):
        super().__init__()
        self.model = without(model, "backbone", "head")
        self.feature_names = feature_names
        self.levels = levels

    def forward(self, image, *tensors):
        """Boxes (N x 4), scores (N), classes (N), from the image and the backbone's outputs."""
        from detectron2.structures import ImageList

        features, logits, deltas = unflatten(tensors, self.feature_names, self.levels)
        images = ImageList(image[None], [(image.shape[-2], image.shape[-1])])
        head_features = [features[name] for name in self.model.head_in_features]
        instances = self.model.forward_inference(images, head_features, [logits, deltas])[0]
        return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def feature_maps(names, tensors) -> dict:
    """``Backbone``'s channels-last feature maps by name, as 1 x C x h x w views."""
    return {name: tensor.permute(0, 3, 1, 2) for name, tensor in zip(names, tensors, strict=True)}


def unflatten(tensors, feature_names, levels):
    """The flat outputs of ``Backbone`` as (features by name, logits list, deltas list)."""
    count = len(feature_names)
    features = feature_maps(feature_names, tensors[:count])
    logits = list(tensors[count : count + levels])
    deltas = list(tensors[count + levels : count + 2 * levels])
    return features, logits, deltas
