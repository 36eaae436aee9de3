"""Typed parameters of the pipeline's models: one schema per model.

Triton carries a model's settings as strings in ``config.pbtxt``
(``parameters { key: "min_size_test" value { string_value: "800" } }``).  Each model's
settings are a frozen dataclass here, with their names, types and defaults; the exporter
writes them with :func:`to_parameters`, each ``model.py`` reads them back with
:func:`from_model_config` and the benchmarks with
``export_tools.repository.configs.read_parameters``, all through :func:`from_parameters`.

Keys that are not fields are ignored (the reload watchdog adds ``d2t_reload_generation``).
This module is the contract's bottom: it imports the standard library and ``errors`` and
``names`` only (``tests/unit/d2_triton/test_tiers.py``); the settings the models share with
``vision`` (:class:`DecodeLimits`, :class:`PanopticSettings`) are declared here.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from d2_triton.errors import InvalidArgumentError, ModelConfigError
from d2_triton.names import MASK_FORMATS, SEGMENTATIONS, Precision

Parameters = TypeVar("Parameters")
# Detectron2's default SEM_SEG_HEAD.COMMON_STRIDE: the semantic logits' stride.
SEM_SEG_STRIDE = 4


@dataclass(frozen=True)
class DecodeLimits:
    """Limits applied to every request before decoding (``vision.imaging.decode_image``).

    The defaults admit any ordinary photo (a 8K x 6K frame is 48 MP) while keeping one
    request's decoded image under ~200 MB of memory.
    """

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 64_000_000

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise InvalidArgumentError(f"decode limits must be positive, got {self}")


@dataclass(frozen=True)
class PanopticSettings:
    """``cfg.MODEL.PANOPTIC_FPN.COMBINE`` (the model's ``combine_*`` attributes).

    The defaults are Detectron2's.
    """

    overlap_threshold: float = 0.5
    stuff_area: int = 4096
    score_threshold: float = 0.5


@dataclass(frozen=True)
class PreprocessParameters:
    """``preprocess``: Detectron2's test-time input settings (``cfg.INPUT.*``) and limits.

    Attributes:
        min_size_test: ``cfg.INPUT.MIN_SIZE_TEST``, the short edge after resizing.
        max_size_test: ``cfg.INPUT.MAX_SIZE_TEST``, the cap on the long edge.
        input_format: ``cfg.INPUT.FORMAT``, channel order the model expects (BGR or RGB).
        label_map: the label-map JSON, relative to the model's folder (options are checked
            against it before the detector runs).
        max_image_bytes: largest encoded image accepted.
        max_image_pixels: largest decoded image accepted, read from the header.
    """

    min_size_test: int
    max_size_test: int
    input_format: str
    label_map: str
    max_image_bytes: int = DecodeLimits.max_bytes
    max_image_pixels: int = DecodeLimits.max_pixels

    @property
    def limits(self) -> DecodeLimits:
        """The decode limits these parameters set."""
        return DecodeLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)


@dataclass(frozen=True)
class DetectorParameters:
    """``detector``: the exported model (its stages, ``serving.stages``) and how to run it.

    Attributes:
        output_fields: Detectron2 ``Instances`` field of each detector output, in order.
        intra_op_threads: threads per instance (torch intra-op and OpenVINO inference);
            0: the cores the server may use at load, shared out among the instances.
        weights_source: ``checkpoint`` or ``random`` (then the server log warns).
    """

    output_fields: tuple[str, ...]
    intra_op_threads: int = 0
    weights_source: str = "checkpoint"


@dataclass(frozen=True)
class PostprocessParameters:
    """``postprocess``: label names and the defaults of the request options.

    Attributes:
        label_map: the label-map JSON, relative to the model's folder.
        default_score_threshold: ``score_threshold`` of a request that sets none.
        default_mask_format: ``mask_format`` of a request that sets none.
        segmentation: ``none``, ``semantic`` or ``panoptic`` (``names.SEGMENTATIONS``).
        stuff_label_map: the semantic head's class names (Detectron2's ``stuff_classes``),
            relative to the model's folder; empty without a semantic head.
        sem_seg_stride: the semantic head's ``common_stride`` (its logits' stride).
        panoptic_overlap_threshold, panoptic_stuff_area, panoptic_score_threshold: the
            model's ``PANOPTIC_FPN.COMBINE`` settings (:class:`PanopticSettings`).
    """

    label_map: str
    default_score_threshold: float = 0.0
    default_mask_format: str = "rle"
    segmentation: str = SEGMENTATIONS[0]
    stuff_label_map: str = ""
    sem_seg_stride: int = SEM_SEG_STRIDE
    panoptic_overlap_threshold: float = PanopticSettings.overlap_threshold
    panoptic_stuff_area: int = PanopticSettings.stuff_area
    panoptic_score_threshold: float = PanopticSettings.score_threshold

    def __post_init__(self) -> None:
        """Refuse a mask format or segmentation the models do not know."""
        if self.default_mask_format not in MASK_FORMATS:
            raise ModelConfigError(
                f"default_mask_format must be one of {', '.join(MASK_FORMATS)}, "
                f"got {self.default_mask_format!r}"
            )
        if self.segmentation not in SEGMENTATIONS:
            raise ModelConfigError(
                f"segmentation must be one of {', '.join(SEGMENTATIONS)}, got {self.segmentation!r}"
            )

    @property
    def panoptic(self) -> PanopticSettings:
        """The panoptic combination's settings."""
        return PanopticSettings(
            self.panoptic_overlap_threshold,
            self.panoptic_stuff_area,
            self.panoptic_score_threshold,
        )


@dataclass(frozen=True)
class EnsembleParameters:
    """``ensemble``: what the pipeline tells clients about itself (the gateway's /v1/models).

    Attributes:
        labels: the class names as a label-map JSON object (``{"0": "person", ...}``),
            written at export from the same label map as postprocess's ``labels.json``.
        precision: the detector's exported arithmetic (``export --precision``); a bf16
            export on a CPU without bf16 runs f32 (its detector says so in the server log).
    """

    labels: str = "{}"
    precision: Precision = Precision.F32

    def __post_init__(self) -> None:
        """Refuse a precision the exporter does not write."""
        object.__setattr__(self, "precision", Precision.parse(self.precision, ModelConfigError))


def to_parameters(parameters: Any) -> dict[str, str]:
    """A parameters dataclass as config.pbtxt's string values (tuples as JSON lists)."""
    return {
        field.name: _to_string(getattr(parameters, field.name))
        for field in dataclasses.fields(parameters)
    }


def from_parameters(cls: type[Parameters], values: Mapping[str, str]) -> Parameters:
    """Parse config.pbtxt's string values into ``cls``; ModelConfigError names a bad key."""
    types = typing.get_type_hints(cls)
    parsed: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            if field.default is dataclasses.MISSING:
                raise ModelConfigError(f"{cls.__name__}: missing parameter {field.name!r}")
            continue
        parsed[field.name] = _from_string(field.name, values[field.name], types[field.name])
    return cls(**parsed)


def from_model_config(cls: type[Parameters], model_config: Mapping[str, Any]) -> Parameters:
    """Parse the parameters of the model config Triton hands to ``initialize`` (JSON form)."""
    # Protobuf's JSON form leaves an empty string value out.
    values = {
        key: value.get("string_value", "")
        for key, value in model_config.get("parameters", {}).items()
    }
    return from_parameters(cls, values)


def _to_string(value: Any) -> str:
    return json.dumps(list(value)) if isinstance(value, tuple) else str(value)


def _from_string(name: str, text: str, kind: Any) -> Any:
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if typing.get_origin(kind) is tuple:
            values = json.loads(text)
            if not isinstance(values, list):
                raise ModelConfigError("not a JSON list")
            return tuple(str(value) for value in values)
        return text
    except ValueError as error:
        raise ModelConfigError(f"parameter {name!r}: cannot read {text!r}: {error}") from None
