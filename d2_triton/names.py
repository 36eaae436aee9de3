"""Names shared by the exporter, the Triton models and the clients.

Keeping them in one place is what lets the exporter generate configs that the models and
the clients agree with, and lets a test check that they do.
"""

from __future__ import annotations

import argparse
import enum
import re
from dataclasses import dataclass
from pathlib import Path

from d2_triton import carried
from d2_triton.errors import InvalidArgumentError

# The four models of a pipeline, by role.  The default pipeline's models carry these names.
ENSEMBLE_MODEL = "ensemble"
PREPROCESS_MODEL = "preprocess"
DETECTOR_MODEL = "detector"
POSTPROCESS_MODEL = "postprocess"
ROLES = (PREPROCESS_MODEL, DETECTOR_MODEL, POSTPROCESS_MODEL, ENSEMBLE_MODEL)
# The pipeline ``export`` writes without ``--name``, and clients call without a model name.
DEFAULT_PIPELINE = "default"
PIPELINE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class Precision(str, enum.Enum):
    """What an export's OpenVINO stages compute in (``export --precision``), and what each needs.

    ``f32`` (the default) is within float rounding of Detectron2; ``bf16`` runs natively
    where the CPU has AMX or AVX512-BF16 (elsewhere the detector runs f32 and logs it);
    ``int8`` is NNCF's post-training quantization, calibrated on images.  Each is a string
    too: ``Precision.INT8 == "int8"``, and it is written as its value.
    """

    F32 = "f32"
    BF16 = "bf16"
    INT8 = "int8"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str, error: type[Exception] = InvalidArgumentError) -> Precision:
        """The precision ``value`` names; ``error`` (a ValueError) naming the choices if none."""
        try:
            return cls(value)
        except ValueError:
            raise error(f"unknown precision {value!r} (one of {cls.choices()})") from None

    @classmethod
    def choices(cls) -> str:
        """``f32, bf16 or int8``, for help texts and errors."""
        values = [precision.value for precision in cls]
        return f"{', '.join(values[:-1])} or {values[-1]}"

    @property
    def needs_calibration(self) -> bool:
        """Whether an export at this precision calibrates on images first."""
        return self is Precision.INT8

    @property
    def staged_only(self) -> bool:
        """Whether only the staged export has it (``--exact`` and a GPU detector are f32)."""
        return self is not Precision.F32

    @property
    def cpu_capability(self) -> str | None:
        """The CPU capability (OpenVINO's name) it needs to run natively, if any."""
        return "BF16" if self is Precision.BF16 else None

    @property
    def float_arithmetic(self) -> str:
        """What its unquantized layers compute in (an int8 model's float layers run f32)."""
        return Precision.F32.value if self is Precision.INT8 else self.value


# The layout of a model repository the exporter writes and the server reads (recorded in
# each detector version's export_info.json): a server refuses to serve another layout.
REPOSITORY_LAYOUT = 1
# What each detector version records of its export (weights, options, files' hashes).
EXPORT_INFO_FILE = "export_info.json"

# The ensemble's single input: the raw bytes of one encoded image.
IMAGE_BYTES = "image_bytes"

# Between the steps: preprocess's outputs (the detector's input and the two sizes that
# postprocess needs) and the detector's mask probabilities.
IMAGE = "image"
ORIGINAL_SIZE = "original_size"
RESIZED_SIZE = "resized_size"
MASK_PROBS = "mask_probs"
SEM_SEG_LOGITS = "sem_seg_logits"

# The TorchScript model's outputs (Detectron2 ``Instances`` fields, and ``sem_seg``, the
# semantic head's logits) -> detector tensor names; the exporter exports those a model
# produces, in this order.  The carried outputs (keypoints ...) are ``d2_triton.carried``'s.
DETECTOR_OUTPUTS = {
    "pred_boxes": "boxes",
    "scores": "scores",
    "pred_classes": "classes",
    "pred_masks": MASK_PROBS,
    **{kind.field: kind.name for kind in carried.CARRIED},
    "sem_seg": SEM_SEG_LOGITS,
}

# Outputs of `postprocess`, which are also the ensemble's outputs.
BOXES = "boxes"
SCORES = "scores"
CLASSES = "classes"
LABELS = "labels"
MASKS_RLE = "masks_rle"
MASKS = "masks"
IMAGE_SIZE = "image_size"
# Segments of a semantic or panoptic model (one entry each, ``d2_triton.vision.segments``):
# the id each has in the segment map, its class in its own label space (thing or stuff),
# that class's name, whether it is a thing, its instance's score (NaN for stuff), its area
# in pixels; its mask as COCO RLE, or the whole map (H x W segment ids, 0: none) as dense.
SEGMENT_IDS = "segment_ids"
SEGMENT_CLASSES = "segment_classes"
SEGMENT_LABELS = "segment_labels"
SEGMENT_IS_THING = "segment_is_thing"
SEGMENT_SCORES = "segment_scores"
SEGMENT_AREAS = "segment_areas"
SEGMENTS_RLE = "segments_rle"
SEGMENT_MAP = "segment_map"
# What a model segments: nothing (instances only), semantic classes, or panoptic segments.
SEGMENTATIONS = ("none", "semantic", "panoptic")

# How postprocess returns masks (request parameter ``mask_format``): COCO RLE, dense uint8
# N x H x W, or not at all.
MASK_FORMATS = ("rle", "dense", "none")
# How a result's JSON carries masks (``DetectionResult.to_json``, the gateway): COCO RLE,
# COCO polygons (computed from the RLE on the client side), or not at all.
JSON_MASK_FORMATS = ("rle", "polygon", "none")


def triton_mask_format(json_mask_format: str) -> str:
    """The ``mask_format`` to ask postprocess for, to write ``json_mask_format`` JSON.

    Polygons are traced from the RLE masks, so both ``rle`` and ``polygon`` ask for RLE.
    """
    if json_mask_format not in JSON_MASK_FORMATS:
        raise InvalidArgumentError(f"mask format must be one of {JSON_MASK_FORMATS}")
    return "none" if json_mask_format == "none" else "rle"


# The launcher's account of each pipeline's health, on the front's HTTP port
# (d2_triton.server.status); the gateway and its page show it.
PIPELINE_HEALTH_PATH = "/d2t/pipelines"
# Default ports: Triton's own defaults (HTTP, gRPC, metrics) and the REST gateway's.
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
GATEWAY_PORT = 8080
# HTTP header carrying the admin key, without which Triton refuses its restricted APIs
# (d2_triton.server.settings.RESTRICTED_APIS); over gRPC, Triton wants it under its own prefix.
ADMIN_HEADER = "d2t-admin-key"
ADMIN_GRPC_METADATA = f"triton-grpc-protocol-{ADMIN_HEADER}"
# Inference requests admitted per pipeline at once, per detector instance, by the front and
# by the gateway (the rest are answered 503 at once): one running, the rest waiting.  At
# ~1.4 s per 800x1067 image on 2 cores the last one admitted waits ~22 s, inside the
# gateway's 60 s timeout, so admitted work is not wasted on clients that gave up.
ADMITTED_PER_INSTANCE = 16
# Seconds an overloaded front or gateway asks clients to wait before trying again.
RETRY_AFTER_S = 2


@dataclass(frozen=True)
class PipelineNames:
    """The Triton model names of one pipeline: ``<name>_<role>``, or ``<role>`` for the default.

    Several pipelines share a model repository (and so one tritonserver) side by side: the
    pipeline ``keypoints`` is served as ``keypoints_ensemble`` over ``keypoints_preprocess``,
    ``keypoints_detector`` and ``keypoints_postprocess``, while ``default`` keeps the plain
    role names.  Names are lower-case letters, digits and ``-`` (so ``_`` only ever separates
    the name from the role), at most 63 characters.
    """

    name: str = DEFAULT_PIPELINE

    def __post_init__(self) -> None:
        if not PIPELINE_NAME_PATTERN.fullmatch(self.name):
            raise InvalidArgumentError(
                f"a pipeline name is 1-63 lower-case letters, digits and '-', starting with a "
                f"letter or digit; got {self.name!r}"
            )

    def model(self, role: str) -> str:
        """The Triton model name of ``role`` (one of ``ROLES``) in this pipeline."""
        if role not in ROLES:
            raise InvalidArgumentError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        return role if self.name == DEFAULT_PIPELINE else f"{self.name}_{role}"

    @property
    def ensemble(self) -> str:
        """The model clients call: bytes in, detections out."""
        return self.model(ENSEMBLE_MODEL)

    @property
    def preprocess(self) -> str:
        """The preprocess model (decode and resize)."""
        return self.model(PREPROCESS_MODEL)

    @property
    def detector(self) -> str:
        """The detector model (the Detectron2 model)."""
        return self.model(DETECTOR_MODEL)

    @property
    def postprocess(self) -> str:
        """The postprocess model (boxes, masks and labels)."""
        return self.model(POSTPROCESS_MODEL)

    def models(self) -> dict[str, str]:
        """Role -> model name, for the four models."""
        return {role: self.model(role) for role in ROLES}

    @classmethod
    def in_repository(cls, repository: Path) -> list[PipelineNames]:
        """The pipelines whose ensemble has a config in ``repository``, by name."""
        found = [
            cls.of_ensemble(config.parent.name) for config in repository.glob("*/config.pbtxt")
        ]
        return sorted((names for names in found if names is not None), key=lambda n: n.name)

    @classmethod
    def of_ensemble(cls, model_name: str) -> PipelineNames | None:
        """The pipeline whose ensemble is ``model_name``; None for any other model."""
        if model_name == ENSEMBLE_MODEL:
            return cls()
        name, _, role = model_name.rpartition("_")
        if role != ENSEMBLE_MODEL or not PIPELINE_NAME_PATTERN.fullmatch(name):
            return None
        pipeline = cls(name)
        return pipeline if pipeline.ensemble == model_name else None  # not "default_ensemble"


def model_version(folder_name: str) -> int | None:
    """The version a model's subfolder holds, as Triton reads its name (None: not a version).

    Triton loads subfolders named by a positive integer without a leading zero and ignores
    the rest, which is what lets the exporter write a version under another name first.
    """
    if folder_name.isdigit() and not folder_name.startswith("0"):
        return int(folder_name)
    return None


def pipeline_name(text: str) -> str:
    """A command line's pipeline name (argparse ``type=``): refused unless it is valid."""
    try:
        return PipelineNames(text).name
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
