"""int8 OpenVINO stages: NNCF's post-training quantization, calibrated on the user's images.

The float32 plan is written and checked first (``files``); then the plan runs on each
calibration image, decoded and resized exactly as the served ``preprocess`` does, while every
OpenVINO stage's inputs are recorded, and ``nncf.quantize`` rewrites that stage's IR with
int8 weights and activations (the operations NNCF leaves unquantized stay float32).  The
TorchScript glue (proposal selection, ROI pooling, NMS) is untouched.

Two choices for the backbone were measured on the model trained here (``benchmarks.accuracy.run``;
the figures are in ``benchmarks/README.md``): NNCF's defaults lost 1.7 bbox AP.  Most of it
came from the ResNet stem and first residual block, which see the image nearly raw, so they
stay float32 (:data:`FLOAT_SCOPE`, a small share of the multiply-adds); and the backbone's
activation ranges are the plain minimum and maximum over the calibration images, which clip
less than NNCF's default mean of per-image ranges.  The box, mask and keypoint heads keep
NNCF's defaults (plain min/max cost the box head 0.35 AP).  Together: within 0.1 AP of
float32 on box and mask AP with 100 calibration images.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from d2_triton.model_config import PreprocessParameters
from d2_triton.names import Precision
from d2_triton.serving import steps
from d2_triton.serving.stages import StagedModel, available_cores
from d2_triton.vision.imaging import ACCEPTED, SIGNATURES, InvalidImageError
from export_tools.errors import DatasetError
from export_tools.progress import progress

LOGGER = logging.getLogger(__name__)
# Detectron2 ResNet operations left in float32 (by their names in the converted IR); other
# backbones have no such names and are quantized whole.
FLOAT_SCOPE = (r".*\.bottom_up\.(stem|res2\.0)[./].*",)
# The files of a calibration folder that are read: the formats serving decodes, by suffix.
IMAGE_SUFFIXES = frozenset({f".{name}" for name in SIGNATURES} | {".jpg", ".tif"})


def calibration_files(folder: Path, limit: int) -> list[Path]:
    """Up to ``limit`` image files under ``folder``, in name order (DatasetError if none)."""
    if not folder.is_dir():
        raise DatasetError(f"calibration folder {folder}: no such folder")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise DatasetError(f"calibration folder {folder}: no image files ({ACCEPTED})")
    return found[:limit]


def model_inputs(files: list[Path], parameters: PreprocessParameters) -> Iterator[torch.Tensor]:
    """Each file as the detector receives it from ``preprocess``; unreadable ones skipped."""
    for path in files:
        try:
            yield torch.from_numpy(steps.preprocess(path.read_bytes(), parameters).image)
        except InvalidImageError as error:
            LOGGER.warning("calibration: skipping %s (%s)", path, error)


def record_stage_inputs(
    model: StagedModel, images, total: int | None = None
) -> dict[str, list[list[np.ndarray]]]:
    """The inputs every OpenVINO stage of ``model`` received, by stage name, per image."""
    recorded: dict[str, list[list[np.ndarray]]] = defaultdict(list)

    def observe(stage, inputs) -> None:
        if stage.runtime == "openvino":
            recorded[stage.name].append([t.detach().cpu().numpy().copy() for t in inputs])

    count = 0
    with torch.no_grad():
        for image in progress(images, "calibration images", total):
            model(image, observe=observe)
            count += 1
    if not count:
        raise DatasetError("calibration: none of the images could be decoded")
    return recorded


def stage_options(name: str) -> dict:
    """``nncf.quantize``'s options for the OpenVINO stage ``name`` (see the module docstring)."""
    if name != "backbone":
        return {}
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    return {
        "ignored_scope": nncf.IgnoredScope(patterns=list(FLOAT_SCOPE), validate=False),
        "advanced_parameters": AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
        ),
    }


def quantize_stages(folder: Path, files: list[Path], parameters: PreprocessParameters) -> None:
    """Quantize every OpenVINO stage in ``folder`` to int8 in place.

    ``stages.json`` already says ``int8`` (``files.write_stages``); the plan is loaded at
    ``f32`` to record the float stages' inputs.
    """
    import nncf
    import openvino

    model = StagedModel.load(folder, torch.device("cpu"), available_cores(), Precision.F32)
    recorded = record_stage_inputs(model, model_inputs(files, parameters), len(files))
    core = openvino.Core()
    for stage in model.plan.stages:
        if stage.runtime != "openvino":
            continue
        samples = recorded[stage.name]
        LOGGER.info("quantizing %s on %d samples", stage.name, len(samples))
        quantized = nncf.quantize(
            core.read_model(str(folder / stage.file)),
            nncf.Dataset(samples),
            subset_size=len(samples),
            **stage_options(stage.name),
        )
        # Saved beside and renamed over: the float32 IR's .bin is memory-mapped by OpenVINO
        # (the loaded plan, read_model), and writing into it in place is a SIGBUS.
        target = folder / stage.file
        staged = target.with_name(f"{target.stem}.int8.xml")
        openvino.save_model(quantized, str(staged), compress_to_fp16=False)
        staged.with_suffix(".bin").replace(target.with_suffix(".bin"))
        staged.replace(target)
