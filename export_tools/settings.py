"""Everything one export is asked to do, as one typed object.

The command line (``python -m export_tools.export``) builds an :class:`ExportSettings`; the
library (``export_tools.api.export``) takes one; tests and benchmarks build their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from d2_triton.names import DEFAULT_PIPELINE, PipelineNames
from d2_triton.vision.imaging import DecodeLimits

DEVICES = ("cpu", "gpu")


@dataclass(frozen=True)
class CocoDataset:
    """A dataset in COCO format, registered with ``register_coco_instances`` before export.

    The exporter takes the class names from the metadata of the config's first
    ``DATASETS.TEST``: registering a custom dataset under that name gives them.
    """

    name: str
    json_file: Path
    image_root: Path


@dataclass(frozen=True)
class ExportSettings:
    """One export.

    Attributes:
        config: a model-zoo config name or a Detectron2 yaml file.
        weights: ``zoo`` (the config's model-zoo checkpoint), a URL, a local .pkl/.pth, or
            ``random`` (a fixed-seed initialisation, for tests only).
        repository: the Triton model repository to write.
        name: the pipeline's name: its four models are ``<name>_<role>`` (the default
            pipeline keeps the plain role names), so several share one repository.
        fallback_random: export a random initialisation, loudly, if the weights fail to load.
        seed: seed of the random initialisation.
        score_thresh_test: overrides the model's internal test score threshold.
        default_score_threshold: postprocess' threshold for a request that sets none.
        label_map: a label-map JSON to ship instead of the dataset metadata's names.
        sample_image: the image to trace with (default: a synthetic 480x640 image).
        exact: export the single traced model (bit-identical to Detectron2, slower) instead
            of the staged one (OpenVINO for the static parts; see export_tools.trace.split).
        device: instance kind of the detector, ``cpu`` or ``gpu``.
        detector_instances: detector instances.
        detector_threads: torch intra-op threads per detector instance (0: torch's default).
        preprocess_instances: preprocess instances.
        postprocess_instances: postprocess instances.
        max_image_bytes: the largest encoded image preprocess accepts.
        max_image_pixels: the largest decoded image preprocess accepts.
        options: extra Detectron2 config options, KEY VALUE pairs.
        datasets: COCO-format datasets to register first (class names of custom models).
    """

    config: str
    weights: str = "zoo"
    repository: Path = Path("models")
    name: str = DEFAULT_PIPELINE
    fallback_random: bool = False
    seed: int = 0
    score_thresh_test: float | None = None
    default_score_threshold: float = 0.0
    label_map: Path | None = None
    sample_image: Path | None = None
    exact: bool = False
    device: str = "cpu"
    detector_instances: int = 1
    detector_threads: int = 0
    preprocess_instances: int = 1
    postprocess_instances: int = 1
    max_image_bytes: int = DecodeLimits.max_bytes
    max_image_pixels: int = DecodeLimits.max_pixels
    options: tuple[str, ...] = field(default_factory=tuple)
    datasets: tuple[CocoDataset, ...] = field(default_factory=tuple)

    @property
    def pipeline(self) -> PipelineNames:
        """The Triton model names this export writes."""
        return PipelineNames(self.name)
