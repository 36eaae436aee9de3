"""Export a Detectron2 model to a Triton model repository: the library.

:func:`export` takes an :class:`~export_tools.settings.ExportSettings` and raises an
:class:`~export_tools.errors.ExportError` when it cannot; ``python -m export_tools.export``
is the thin command line over it (as Detectron2 keeps ``tools/deploy/export_model.py`` thin
over ``detectron2.export``).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from d2_triton.model_config import PanopticSettings, PreprocessParameters
from d2_triton.serving.usage_telemetry import turn_off_openvino_telemetry
from d2_triton.vision.labels import LabelMap
from export_tools.detector_config import (
    DetectorConfig,
    detections_per_image,
    load_config,
    score_thresh,
)
from export_tools.detectron2_setup.shims import import_detectron2, shims_in_use
from export_tools.errors import (
    ConfigError,
    DatasetError,
    LabelMapError,
    UnsupportedModelError,
    WeightsError,
)
from export_tools.random_init import announce_random_weights, build_random_model
from export_tools.repository import writer
from export_tools.settings import CocoDataset, ExportSettings, check_dataset, one_line
from export_tools.trace import files, quantize, split, tracing

LOGGER = logging.getLogger("export_tools.api")


@dataclass(frozen=True)
class WeightsInfo:
    """Where the exported weights came from.

    Attributes:
        source: ``checkpoint`` or ``random``.
        location: the checkpoint's path or URL (for ``random``, the one that failed, if any).
        seed: the random initialisation's seed.
    """

    source: str
    location: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` did.

    Attributes:
        model: what was exported.
        weights: where its weights came from.
        written: every file written.
        sample_detections: detections of the eager model on the sample image.
        at_cut: of those, how many the staged detector keeps or drops differently (or keeps
            as another of tied copies), all with
            scores at the cut (0 for an exact export).
        seconds: how long the export took.
    """

    model: writer.ExportedModel
    weights: WeightsInfo
    written: list[Path]
    sample_detections: int
    at_cut: int
    seconds: float


def resolve_weights(weights: str, config: str) -> str | None:
    """'zoo' -> the model-zoo URL of a zoo config; 'random' -> None; else unchanged."""
    if weights == "random":
        return None
    if weights == "zoo":
        from detectron2 import model_zoo

        if Path(config).is_file():
            raise ConfigError("--weights zoo needs a model-zoo config name, not a file path")
        return model_zoo.get_checkpoint_url(config)
    return weights


def build_model(config: DetectorConfig, weights: str | None, seed: int, fallback_random: bool):
    """Build the eval-mode model and load its weights; returns (model, WeightsInfo)."""
    from detectron2.checkpoint import DetectionCheckpointer

    if weights is None:
        announce_random_weights(seed, reason="--weights random")
        return build_random_model(config, seed), WeightsInfo(source="random", seed=seed)
    model = config.build_model()
    try:
        DetectionCheckpointer(model).load(weights)
    except Exception as error:
        if not fallback_random:
            raise WeightsError(f"could not load weights {weights}: {error}") from error
        announce_random_weights(seed, reason=f"loading {weights} failed: {error}")
        return build_random_model(config, seed), WeightsInfo("random", location=weights, seed=seed)
    return model, WeightsInfo(source="checkpoint", location=weights)


def register_coco_datasets(datasets: tuple[CocoDataset, ...]) -> None:
    """Register each dataset and load it once, which puts its class names in the metadata."""
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    for dataset in datasets:
        check_dataset(dataset)
        if dataset.name not in DatasetCatalog.list():
            register_coco_instances(
                dataset.name, {}, str(dataset.json_file), str(dataset.image_root)
            )
        try:
            DatasetCatalog.get(dataset.name)
        except Exception as error:  # pycocotools' own complaint about the file's content
            raise DatasetError(f"--coco-dataset {dataset.name}: {one_line(error)}") from None


def label_map_from_metadata(config: DetectorConfig, kind: str = "thing_classes") -> LabelMap:
    """Class names from the metadata of the config's first test dataset.

    ``kind``: ``thing_classes`` or ``stuff_classes``.
    """
    from detectron2.data import MetadataCatalog

    if not config.test_datasets:
        raise LabelMapError("the config names no test dataset for class names; pass --label-map")
    dataset = config.test_datasets[0]
    names = MetadataCatalog.get(dataset).get(kind, None)
    if not names:
        raise LabelMapError(f"no {kind} in the metadata of {dataset}; pass --label-map")
    return LabelMap.from_names(names)


def model_labels(labels: LabelMap | None, model, config: DetectorConfig, outputs):
    """The class names (``--label-map``'s, else the metadata's) and the segment settings.

    A semantic segmentor's classes are its stuff classes.
    """
    segments = segment_settings(model, config, outputs)
    if labels is None and not outputs.has_instances:
        labels = segments["stuff_labels"]
    return labels or label_map_from_metadata(config), segments


def segment_settings(model, config: DetectorConfig, outputs) -> dict:
    """``ExportedModel``'s segmentation fields for a model with a semantic head (else none).

    The head's class names (Detectron2's ``stuff_classes``), stride and the panoptic
    combination's settings.
    """
    if not outputs.sem_seg_classes:
        return {}
    stuff = label_map_from_metadata(config, "stuff_classes")
    if len(stuff) != outputs.sem_seg_classes:
        raise LabelMapError(
            f"the semantic head has {outputs.sem_seg_classes} classes, the metadata of "
            f"{config.test_datasets[0]} names {len(stuff)} stuff_classes"
        )
    default = PanopticSettings()  # a semantic segmentor has no combination
    panoptic = PanopticSettings(
        overlap_threshold=float(
            getattr(model, "combine_overlap_thresh", default.overlap_threshold)
        ),
        stuff_area=int(getattr(model, "combine_stuff_area_thresh", default.stuff_area)),
        score_threshold=float(
            getattr(model, "combine_instances_score_thresh", default.score_threshold)
        ),
    )
    stride = int(model.sem_seg_head.common_stride)
    return {"stuff_labels": stuff, "sem_seg_stride": stride, "panoptic": panoptic}


def export(settings: ExportSettings) -> ExportResult:
    """Build, trace, check and write one model repository (ExportError if it cannot)."""
    started = time.perf_counter()
    turn_off_openvino_telemetry()  # before OpenVINO's import (d2_triton.serving.usage_telemetry)
    settings.check()  # every file, before anything costly
    labels = settings.read_label_map()
    calibration = calibration_files(settings)
    detectron2 = import_detectron2()
    register_coco_datasets(settings.datasets)
    config = load_config(settings.config, settings.options, settings.score_thresh_test)
    weights_location = resolve_weights(settings.weights, settings.config)
    model, weights = build_model(config, weights_location, settings.seed, settings.fallback_random)
    image = tracing.model_input(config, tracing.load_sample_image(settings.sample_image))
    with torch.no_grad():
        eager = tracing.raw_outputs(model, image)  # the reference every check compares to
    fields, outputs = tracing.describe_outputs(eager)
    stages, mode = detector_stages(model, image, fields, eager, detector_mode(settings))
    labels, segments = model_labels(labels, model, config, outputs)
    info = {
        "config": settings.config,
        "config_system": "lazy" if config.lazy else "yaml",
        "meta_architecture": config.meta_architecture,
        "weights": asdict(weights),
        "input_format": config.input_format,
        "min_size_test": config.min_size_test,
        "max_size_test": config.max_size_test,
        "score_thresh_test": score_thresh(model),
        "detections_per_image": detections_per_image(model),
        "output_fields": fields,
        "segmentation": outputs.segmentation,
        "detector_mode": mode,
        "precision": settings.precision.value,
        "detector_stages": {stage.stage.name: stage.runtime for stage in stages},
        "num_classes": len(labels),
        "detectron2_version": detectron2.__version__,
        "detectron2_shims": shims_in_use(),
        "torch_version": torch.__version__,
        "config_options": list(settings.options),
    }
    exported = writer.ExportedModel(
        fields=tuple(fields),
        outputs=outputs,
        input=writer.InputSettings(config.min_size_test, config.max_size_test, config.input_format),
        labels=labels,
        weights_source=weights.source,
        info=info,
        **segments,
    )
    with tempfile.TemporaryDirectory(prefix="d2t-detector-") as scratch:
        # The detector's files are written and checked here before the repository is touched.
        files.write_stages(stages, fields, Path(scratch), settings.precision)
        at_cut = 0
        if mode == "staged":
            expected = {field: eager.tensor(field) for field in fields}
            at_cut = files.verify_stages(Path(scratch), expected, image)
        if calibration:
            quantize.quantize_stages(Path(scratch), calibration, preprocess_parameters(exported))
        written = writer.write_repository(exported, Path(scratch), settings)
    seconds = time.perf_counter() - started
    return ExportResult(exported, weights, written, len(eager), at_cut, seconds)


def calibration_files(settings: ExportSettings) -> list[Path]:
    """The images an int8 export calibrates on (none for other precisions)."""
    folder = settings.calibration_folder
    if not settings.precision.needs_calibration or folder is None:
        return []
    return quantize.calibration_files(folder, settings.calibration_images)


def preprocess_parameters(model: writer.ExportedModel) -> PreprocessParameters:
    """What the served preprocess does to an image, for the calibration images."""
    size = model.input
    return PreprocessParameters(size.min_size_test, size.max_size_test, size.input_format, "")


def detector_stages(model, image, fields: list[str], eager, mode: str):
    """The detector's traced stages and the mode they are in (``staged`` or ``exact``).

    A model the staged split does not support is exported ``exact``, with a warning.  An
    exact trace is checked against ``eager`` (the eager model's instances on ``image``)
    here; staged ones once written.
    """
    if mode == "staged":
        try:
            return split.split_model(model, image, fields), mode
        except UnsupportedModelError as error:
            LOGGER.warning("no stages for this model (%s): exporting it --exact", error)
    traced = tracing.trace(model, image, fields)
    tracing.verify_trace(traced, image, fields, eager)
    return [files.single_stage(traced, image, fields)], "exact"


def detector_mode(settings: ExportSettings) -> str:
    """``exact`` (one traced model) or ``staged`` (OpenVINO for the static parts).

    OpenVINO runs on the CPU, so a GPU detector is exported exact (its faster counterpart,
    FP16 or TensorRT, is the README's plan).
    """
    return "exact" if settings.exact or settings.device == "gpu" else "staged"
