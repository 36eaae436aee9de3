"""The preprocess and postprocess steps as plain functions.

The Triton models (``models/*/1/model.py``) only move tensors in and out of these; the
benchmarks time the very same functions in-process, so "pre/post cost" means the same
code in both places.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from d2_triton import names
from d2_triton.carried import BY_NAME
from d2_triton.model_config import SEM_SEG_STRIDE, PanopticSettings, PreprocessParameters
from d2_triton.serving.options import PostprocessOptions
from d2_triton.vision.detections import (
    Detections,
    encode_masks_rle,
    paste_masks_dense,
    rescale_to_original,
)
from d2_triton.vision.imaging import decode_image, resize_shortest_edge, to_model_layout
from d2_triton.vision.labels import LabelMap
from d2_triton.vision.segments import (
    Segments,
    encode_segments_rle,
    panoptic_segments,
    semantic_map,
    semantic_segments,
)


@dataclass
class ModelInput:
    """What preprocess hands on.

    Attributes:
        image: uint8 [3, H', W'], resized, in the model's channel order.
        original_hw: height and width of the decoded image.
        resized_hw: H' and W'.
    """

    image: np.ndarray
    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]


def check_options(parameters: Mapping[str, object], labels: LabelMap) -> None:
    """Refuse bad postprocess options (InvalidRequestError) before any pixel is decoded.

    ``postprocess`` applies them, but only after the detector has run; checking them first
    keeps a malformed request from costing a full inference.
    """
    PostprocessOptions().updated_from(parameters, labels)


def preprocess(data: bytes, parameters: PreprocessParameters) -> ModelInput:
    """Encoded image bytes -> the detector's input (raises InvalidRequestError)."""
    image = decode_image(data, parameters.limits)
    resized = resize_shortest_edge(image, parameters.min_size_test, parameters.max_size_test)
    return ModelInput(
        image=to_model_layout(resized, parameters.input_format),
        original_hw=(image.shape[0], image.shape[1]),
        resized_hw=(resized.shape[0], resized.shape[1]),
    )


@dataclass(frozen=True)
class Segmentation:
    """How postprocess turns a semantic head's logits into segments.

    Attributes:
        kind: ``semantic`` or ``panoptic`` (``names.SEGMENTATIONS``).
        logits: the head's logits for this image, C x h x w.
        stuff_labels: the head's class names.
        stride: the logits' stride.
        panoptic: the combination's settings (panoptic only).
    """

    kind: str
    logits: np.ndarray
    stuff_labels: LabelMap
    stride: int = SEM_SEG_STRIDE
    panoptic: PanopticSettings = field(default_factory=PanopticSettings)


def postprocess(
    raw: Detections,
    resized_hw: tuple[int, int],
    original_hw: tuple[int, int],
    options: PostprocessOptions,
    labels: LabelMap,
    segmentation: Segmentation | None = None,
) -> dict[str, np.ndarray]:
    """Detector outputs -> the ensemble's outputs, by name (BYTES as object arrays).

    The request's options (score threshold, classes, max detections) select instances;
    segments are Detectron2's panoptic or semantic answer for the whole image whatever they
    are, and ``mask_format`` says how their masks come (RLE each, the dense map, or none).
    """
    rescaled = rescale_to_original(raw, resized_hw, original_hw)
    detections = options.apply(rescaled)
    outputs = {
        names.BOXES: detections.boxes,
        names.SCORES: detections.scores,
        names.CLASSES: detections.classes,
        names.LABELS: labels.names_for(detections.classes),
        names.IMAGE_SIZE: np.array(original_hw),
    }
    outputs.update(detections.carried)
    if detections.mask_probs is not None and options.mask_format == "rle":
        outputs[names.MASKS_RLE] = np.array(
            encode_masks_rle(detections, original_hw), dtype=np.object_
        )
    elif detections.mask_probs is not None and options.mask_format == "dense":
        outputs[names.MASKS] = paste_masks_dense(detections, original_hw)
    if segmentation is not None:
        segments = segment(segmentation, rescaled, resized_hw, original_hw)
        outputs.update(segment_outputs(segments, labels, segmentation.stuff_labels))
        if options.mask_format == "rle":
            outputs[names.SEGMENTS_RLE] = np.array(encode_segments_rle(segments), np.object_)
        elif options.mask_format == "dense":
            outputs[names.SEGMENT_MAP] = segments.segment_map
    return outputs


def segment(
    segmentation: Segmentation,
    rescaled: Detections,
    resized_hw: tuple[int, int],
    original_hw: tuple[int, int],
) -> Segments:
    """The image's segments: its semantic classes, or panoptic ones.

    Panoptic segments combine the classes with ``rescaled``: every instance, in original
    pixels, before the request's options select some.
    """
    classes = semantic_map(segmentation.logits, segmentation.stride, resized_hw, original_hw)
    if segmentation.kind == "panoptic":
        return panoptic_segments(rescaled, classes, segmentation.panoptic)
    return semantic_segments(classes)


def segment_outputs(
    segments: Segments, labels: LabelMap, stuff_labels: LabelMap
) -> dict[str, np.ndarray]:
    """The segments' outputs but their masks, by name; things are named from ``labels``."""
    label_names = [
        (labels if thing else stuff_labels).name(int(klass)).encode("utf-8")
        for klass, thing in zip(segments.classes, segments.is_thing, strict=True)
    ]
    return {
        names.SEGMENT_IDS: segments.ids,
        names.SEGMENT_CLASSES: segments.classes,
        names.SEGMENT_LABELS: np.array(label_names, dtype=np.object_),
        names.SEGMENT_IS_THING: segments.is_thing,
        names.SEGMENT_SCORES: segments.scores,
        names.SEGMENT_AREAS: segments.areas,
    }


def warm_up(
    parameters: PreprocessParameters | None = None,
    options: PostprocessOptions | None = None,
    labels: LabelMap | None = None,
    carried: dict[str, tuple[int, ...]] | None = None,
) -> None:
    """Run preprocess or postprocess once on a synthetic photo with one masked detection.

    Preprocess runs when ``parameters`` are given, postprocess when ``options`` and
    ``labels`` are (with the model's carried outputs, by name: each one's shape per instance).
    Called at load, so the first request does not pay for lazy imports and first calls
    (OpenCV's decoder, pycocotools' RLE encoder); the detector is warmed up by Triton's
    ``model_warmup`` in its config.
    """
    import cv2

    rows, cols = np.mgrid[0:480, 0:640]
    photo = np.stack([cols % 256, rows % 256, (rows + cols) % 256], axis=-1).astype(np.uint8)
    if parameters is not None:
        preprocess(cv2.imencode(".jpg", photo)[1].tobytes(), parameters)
    if options is not None and labels is not None:
        mask = np.zeros((1, 28, 28), np.float32)
        mask[:, 7:21, 7:21] = 1.0
        detection = Detections(
            boxes=np.array([[100.0, 80.0, 300.0, 240.0]], np.float32),
            scores=np.ones(1, np.float32),
            classes=np.zeros(1, np.int64),
            mask_probs=mask,
            carried={
                name: np.ones((1, *shape), BY_NAME[name].dtype)
                for name, shape in (carried or {}).items()
            },
        )
        postprocess(detection, (800, 1067), (480, 640), options, labels)
