"""Write one pipeline of a Triton model repository for an exported detector.

preprocess/config.pbtxt   preprocess/1/model.py       decode + Detectron2 resize
detector/config.pbtxt     detector/1/model.py         the stages, run by OpenVINO and torch
                          detector/1/stages.json      its stages (d2_triton.serving.stages)
                          detector/1/*.pt, *.xml/bin  TorchScript and OpenVINO stage files
                          detector/1/export_info.json what was exported, from what
postprocess/config.pbtxt  postprocess/1/model.py      boxes, masks, label names
                          postprocess/labels.json     class id -> name
                          postprocess/stuff_labels.json  semantic class id -> name (if any)
ensemble/config.pbtxt     ensemble/1/                 the three joined: bytes in, detections out

That is the default pipeline; a named one (``--name NAME``) writes the same four folders as
``NAME_preprocess`` ... ``NAME_ensemble`` (``d2_triton.names.PipelineNames``) and leaves the
repository's other pipelines as they are.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from d2_triton import names
from d2_triton.model_config import (
    SEM_SEG_STRIDE,
    DetectorParameters,
    EnsembleParameters,
    PanopticSettings,
    PostprocessParameters,
    PreprocessParameters,
)
from d2_triton.names import EXPORT_INFO_FILE, PipelineNames
from d2_triton.vision.labels import LabelMap
from export_tools.errors import VersionMismatchError
from export_tools.repository import configs
from export_tools.settings import ExportSettings

TEMPLATE_REPOSITORY = Path(__file__).resolve().parents[2] / "models"
LABEL_MAP_FILE = "labels.json"
STUFF_LABEL_MAP_FILE = "stuff_labels.json"
# Files of an earlier export in the detector's version folder that a new one replaces.
STAGE_SUFFIXES = (".pt", ".xml", ".bin", ".json")
# The version folder every export writes.
VERSION = "1"


@dataclass(frozen=True)
class ExportedModel:
    """What the exporter produced, ready to be written.

    Attributes:
        fields: the Detectron2 ``Instances`` field of each detector output, in order.
        outputs: what the detector outputs, which shapes every config.
        input: Detectron2's test-time input settings (MIN/MAX_SIZE_TEST, FORMAT).
        labels: the class names.
        weights_source: ``checkpoint`` or ``random``.
        info: what export_info.json records (each detector file's sha256 is added).
        stuff_labels: the semantic head's class names (None without one).
        sem_seg_stride: the semantic head's logits' stride.
        panoptic: the panoptic combination's settings (a panoptic model's).
    """

    fields: tuple[str, ...]
    outputs: configs.ModelOutputs
    input: InputSettings
    labels: LabelMap
    weights_source: str
    info: dict
    stuff_labels: LabelMap | None = None
    sem_seg_stride: int = SEM_SEG_STRIDE
    panoptic: PanopticSettings = field(default_factory=PanopticSettings)


@dataclass(frozen=True)
class InputSettings:
    """Detectron2's ``cfg.INPUT`` test-time settings that preprocess reproduces."""

    min_size_test: int
    max_size_test: int
    input_format: str


def model_configs(model: ExportedModel, settings: ExportSettings) -> dict[str, object]:
    """The config of each of the pipeline's four models, by role (``names.ROLES``)."""
    pipeline = settings.pipeline
    instances = configs.InstanceSettings(
        detector_kind=settings.device,
        detector_count=settings.detector_instances,
        preprocess_count=settings.preprocess_instances,
        postprocess_count=settings.postprocess_instances,
    )
    preprocess = PreprocessParameters(
        min_size_test=model.input.min_size_test,
        max_size_test=model.input.max_size_test,
        input_format=model.input.input_format,
        label_map=f"../{pipeline.postprocess}/{LABEL_MAP_FILE}",
        max_image_bytes=settings.max_image_bytes,
        max_image_pixels=settings.max_image_pixels,
    )
    detector = DetectorParameters(
        output_fields=model.fields,
        intra_op_threads=settings.detector_threads,
        weights_source=model.weights_source,
    )
    segmented = model.stuff_labels is not None
    postprocess = PostprocessParameters(
        label_map=LABEL_MAP_FILE,
        default_score_threshold=settings.default_score_threshold,
        default_mask_format="rle",
        segmentation=model.outputs.segmentation,
        stuff_label_map=STUFF_LABEL_MAP_FILE if segmented else "",
        sem_seg_stride=model.sem_seg_stride,
        panoptic_overlap_threshold=model.panoptic.overlap_threshold,
        panoptic_stuff_area=model.panoptic.stuff_area,
        panoptic_score_threshold=model.panoptic.score_threshold,
    )
    ensemble = EnsembleParameters(
        labels=json.dumps(model.labels.to_json()), precision=settings.precision
    )
    return {
        names.PREPROCESS_MODEL: configs.preprocess_config(
            preprocess, instances.preprocess_count, pipeline
        ),
        names.DETECTOR_MODEL: configs.detector_config(
            model.outputs,
            detector,
            instances,
            warmup_hw=configs.warmup_size(model.input.min_size_test, model.input.max_size_test),
            pipeline=pipeline,
        ),
        names.POSTPROCESS_MODEL: configs.postprocess_config(
            model.outputs, postprocess, instances.postprocess_count, pipeline
        ),
        names.ENSEMBLE_MODEL: configs.ensemble_config(model.outputs, ensemble, pipeline),
    }


def detector_versions(repository: Path, pipeline: PipelineNames | None = None) -> list[int]:
    """The detector's version folders in ``repository``, oldest first."""
    folder = repository / (pipeline or PipelineNames()).detector
    if not folder.is_dir():
        return []
    versions = (names.model_version(child.name) for child in folder.iterdir() if child.is_dir())
    return sorted(version for version in versions if version is not None)


def export_info_path(
    repository: Path, pipeline: PipelineNames | None = None, version: int | None = None
) -> Path:
    """The export_info.json of a detector version (default: the latest) of ``pipeline``."""
    if version is None:
        version = max(detector_versions(repository, pipeline), default=int(VERSION))
    folder = repository / (pipeline or PipelineNames()).detector / str(version)
    return folder / EXPORT_INFO_FILE


def read_export_info(
    repository: Path, pipeline: PipelineNames | None = None, version: int | None = None
) -> dict:
    """The export_info.json of a detector version (default: the latest) of ``pipeline``."""
    path = export_info_path(repository, pipeline, version)
    return json.loads(path.read_text(encoding="utf-8"))


def write_repository(
    model: ExportedModel, detector_files: Path, settings: ExportSettings
) -> list[Path]:
    """Write the pipeline, or a new version of its detector; returns the paths written.

    A pipeline the repository does not have yet gets its four models (version 1).  One it
    has gets the next detector version beside the others, written in a folder Triton
    ignores and renamed into place when complete (a server watching the repository loads
    it whole); its configs must be the ones this export generates, else VersionMismatchError.
    ``detector_files`` holds the detector's stage files and plan (``trace.files``).
    """
    repository, pipeline = settings.repository, settings.pipeline
    generated = model_configs(model, settings)
    if (repository / pipeline.detector / "config.pbtxt").is_file():
        _check_same_configs(repository, pipeline, generated)
        version = max(detector_versions(repository, pipeline), default=0) + 1
        return _write_detector_version(model, detector_files, repository, pipeline, version)
    written = []
    for role, config in generated.items():
        folder = repository / pipeline.model(role)
        version_dir = folder / VERSION
        version_dir.mkdir(parents=True, exist_ok=True)
        template = TEMPLATE_REPOSITORY / role / VERSION / "model.py"
        if role != names.DETECTOR_MODEL and template.is_file():
            written += _copy_template(template, version_dir)
        config_path = folder / "config.pbtxt"
        config_path.write_text(configs.to_pbtxt(config), encoding="utf-8")
        written.append(config_path)
    label_path = repository / pipeline.postprocess / LABEL_MAP_FILE
    model.labels.write(label_path)
    written.append(label_path)
    if model.stuff_labels is not None:
        stuff_path = repository / pipeline.postprocess / STUFF_LABEL_MAP_FILE
        model.stuff_labels.write(stuff_path)
        written.append(stuff_path)
    return written + _write_detector_version(
        model, detector_files, repository, pipeline, int(VERSION)
    )


def _check_same_configs(repository: Path, pipeline: PipelineNames, generated: dict) -> None:
    """VersionMismatchError unless the pipeline's configs are the ones ``generated`` holds."""
    differing = [
        pipeline.model(role)
        for role, config in generated.items()
        if configs.read_config(repository / pipeline.model(role) / "config.pbtxt") != config
    ]
    if differing:
        raise VersionMismatchError(
            f"pipeline {pipeline.name!r} is in {repository} with other settings (the config of "
            f"{', '.join(differing)} would change): a new version is the same model with new "
            "weights. Export this one under another --name, or into another --repository."
        )


def _write_detector_version(
    model: ExportedModel,
    detector_files: Path,
    repository: Path,
    pipeline: PipelineNames,
    version: int,
) -> list[Path]:
    """The detector's version folder: model.py, the stage files, export_info.json."""
    folder = repository / pipeline.detector
    final = folder / str(version)
    # Triton and the launcher's watcher ignore a folder whose name is not a number.
    target = final if final.is_dir() else folder / f".partial-{version}"
    if target != final:
        shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.iterdir():  # an earlier, unfinished export of version 1
        if stale.suffix in STAGE_SUFFIXES:
            stale.unlink()
    template = TEMPLATE_REPOSITORY / names.DETECTOR_MODEL / VERSION / "model.py"
    _copy_template(template, target)
    detector_written = [
        Path(shutil.copy2(source, target / source.name))
        for source in sorted(detector_files.iterdir())
    ]
    info = {
        **model.info,
        "pipeline": pipeline.name,
        "version": version,
        "repository_layout": names.REPOSITORY_LAYOUT,
        "detector_sha256": {path.name: _sha256(path) for path in detector_written},
    }
    (target / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if target != final:
        target.rename(final)
    files = ["model.py", *(path.name for path in detector_written), EXPORT_INFO_FILE]
    return [final / name for name in files]


def _copy_template(template: Path, version_dir: Path) -> list[Path]:
    """The role's model.py into ``version_dir`` (unless it is the template itself)."""
    target = version_dir / "model.py"
    if template.resolve() == target.resolve():
        return []
    shutil.copyfile(template, target)
    return [target]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
