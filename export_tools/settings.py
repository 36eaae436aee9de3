"""Everything one export is asked to do, as one typed object, each option described once.

:class:`ExportSettings` is the one place an export option is named, typed, defaulted and
described: each field's ``help`` (its metadata) is what ``python -m export_tools.export
--help`` prints, and :func:`add_arguments` / :func:`from_arguments` build the command line
from the fields.  The library (``export_tools.api.export``) takes an ``ExportSettings``;
tests and benchmarks build their own.  :meth:`ExportSettings.check` looks at every file an
export is given before any model is built, so a wrong path fails in seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d2_triton.errors import LabelMapFormatError
from d2_triton.model_config import DecodeLimits
from d2_triton.names import DEFAULT_PIPELINE, PipelineNames, Precision, pipeline_name
from d2_triton.vision.labels import LabelMap
from export_tools.errors import ConfigError, DatasetError, LabelMapError, WeightsError

DEVICES = ("cpu", "gpu")
# --weights values that name no file.
NAMED_WEIGHTS = ("zoo", "random")
CONFIG_SUFFIXES = (".yaml", ".py")  # yaml CfgNode, LazyConfig


def option(default: Any = dataclasses.MISSING, *, help: str, **argparse_options: Any):
    """A settings field: its default, its one description, and how the command line takes it."""
    metadata = {"help": help, "argparse": argparse_options}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


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
    """One export; each field's ``help`` describes it (``export --help`` prints them)."""

    config: str = option(
        help="model-zoo config name (e.g. COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml, "
        "or new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py) or a path to a Detectron2 config: "
        "yaml, or LazyConfig .py",
        required=True,
    )
    weights: str = option(
        "zoo",
        help="'zoo' (the config's model-zoo checkpoint), a URL, a local .pkl/.pth file, or "
        "'random' (a fixed-seed initialisation, for tests only)",
    )
    repository: Path = option(Path("models"), help="the Triton model repository to write")
    name: str = option(
        DEFAULT_PIPELINE,
        help="the pipeline's name: its models become NAME_preprocess, NAME_detector, "
        "NAME_postprocess and NAME_ensemble beside the repository's other pipelines "
        f"({DEFAULT_PIPELINE!r}: the plain names preprocess, ..., ensemble)",
        type=pipeline_name,
    )
    fallback_random: bool = option(
        False,
        help="if the weights cannot be loaded (e.g. no network), export a fixed-seed random "
        "initialisation instead of failing, with a loud warning",
    )
    seed: int = option(0, help="seed of the random initialisation")
    score_thresh_test: float | None = option(
        None,
        help="override the model's internal test score threshold "
        "(MODEL.ROI_HEADS / RETINANET .SCORE_THRESH_TEST)",
    )
    default_score_threshold: float = option(
        0.0,
        help="postprocess' threshold for a request that sets none (0: return what the model "
        "returns, as DefaultPredictor does)",
    )
    label_map: Path | None = option(
        None, help="a label-map JSON to ship instead of the dataset metadata's class names"
    )
    sample_image: Path | None = option(
        None, help="the image to trace with (default: a synthetic 480x640 image)"
    )
    exact: bool = option(
        False,
        help="one traced TorchScript model, bit-identical to Detectron2 (default: stages, the "
        "static parts run by OpenVINO at float32, within float rounding and faster)",
    )
    precision: Precision = option(
        Precision.F32,
        help="what the OpenVINO stages compute in: f32 (within float rounding of Detectron2), "
        "bf16 (faster where the CPU has AMX or AVX512-BF16; elsewhere the detector runs f32 "
        "and logs it) or int8 (NNCF's post-training quantization, needs --calibration or "
        "--coco-dataset); "
        "not with --exact",
        choices=list(Precision),
        type=lambda text: Precision.parse(text, argparse.ArgumentTypeError),
    )
    calibration: Path | None = option(
        None,
        help="int8: a folder of images like those the model will serve, to calibrate the "
        "quantization on (decoded and resized as serving does); default: the image folder "
        "of the first --coco-dataset",
    )
    calibration_images: int = option(
        100, help="int8: calibrate on at most this many images of --calibration"
    )
    device: str = option("cpu", help="instance kind of the detector", choices=DEVICES)
    detector_instances: int = option(
        1,
        help="detector instances, each on every core the server may use (one: a second, "
        "measured at every precision, gained nothing once the glue ran on every core)",
    )
    detector_threads: int = option(
        0,
        help="threads per detector instance, torch's and OpenVINO's (0: the cores the server "
        "may use when it loads the model, each core shared by at most two instances)",
    )
    preprocess_instances: int = option(1, help="preprocess instances")
    postprocess_instances: int = option(1, help="postprocess instances")
    max_image_bytes: int = option(
        DecodeLimits.max_bytes, help="the largest encoded image preprocess accepts"
    )
    max_image_pixels: int = option(
        DecodeLimits.max_pixels, help="the largest decoded image preprocess accepts"
    )
    options: tuple[str, ...] = option(
        (),
        help="extra Detectron2 config options after '--': KEY VALUE pairs for a yaml config, "
        "key=value overrides for a LazyConfig (e.g. model.roi_heads.box_predictor."
        "test_nms_thresh=0.6)",
    )
    datasets: tuple[CocoDataset, ...] = option(
        (),
        help="register a COCO-format dataset first (register_coco_instances); the class names "
        "come from the config's DATASETS.TEST, so name your test set here",
    )

    def __post_init__(self) -> None:
        """A precision given by name (``"int8"``) becomes a :class:`Precision`."""
        object.__setattr__(self, "precision", Precision.parse(self.precision, ConfigError))

    @property
    def pipeline(self) -> PipelineNames:
        """The Triton model names this export writes."""
        return PipelineNames(self.name)

    def check(self) -> None:
        """Every file this export is given exists and reads; ExportError at the first that not.

        Runs before Detectron2 is imported or a model built, so a typo costs seconds.
        """
        if self.precision.staged_only and (self.exact or self.device == "gpu"):
            raise ConfigError(
                f"--precision {self.precision} is for the staged export's OpenVINO stages; "
                "--exact (and a GPU detector) is one TorchScript file at float32"
            )
        self._check_counts()
        if self.precision.needs_calibration and self.calibration_folder is None:
            raise ConfigError(
                "--precision int8 needs calibration images: --calibration DIR, a folder of "
                "images like those the model will serve (100 are read by default), or "
                "--coco-dataset NAME JSON IMAGE_DIR"
            )
        if Path(self.config).suffix not in CONFIG_SUFFIXES:
            raise ConfigError(
                f"--config {self.config}: a Detectron2 config is expected (yaml, or LazyConfig .py)"
            )
        weights = self.weights
        if weights not in NAMED_WEIGHTS and "://" not in weights and not Path(weights).is_file():
            raise WeightsError(f"--weights {weights}: no such file (nor 'zoo', 'random', a URL)")
        if self.label_map is not None:
            self.read_label_map()
        if self.sample_image is not None and not self.sample_image.is_file():
            raise ConfigError(f"--sample-image {self.sample_image}: no such file")
        for dataset in self.datasets:
            check_dataset(dataset)

    def _check_counts(self) -> None:
        """Instance and thread counts Triton and the detector can take (0: chosen for you)."""
        for flag, value, least in (
            ("--detector-instances", self.detector_instances, 1),
            ("--detector-threads", self.detector_threads, 0),
            ("--preprocess-instances", self.preprocess_instances, 1),
            ("--postprocess-instances", self.postprocess_instances, 1),
        ):
            if value < least:
                raise ConfigError(f"{flag} {value}: {least} or more expected")

    @property
    def calibration_folder(self) -> Path | None:
        """Where an int8 export's calibration images are, if anywhere.

        ``--calibration``, else the image folder of the first ``--coco-dataset``.
        """
        if self.calibration is not None:
            return self.calibration
        return self.datasets[0].image_root if self.datasets else None

    def read_label_map(self) -> LabelMap | None:
        """The ``--label-map`` file's names, if one is given (LabelMapError if unreadable)."""
        if self.label_map is None:
            return None
        try:
            return LabelMap.from_file(self.label_map)
        except (OSError, LabelMapFormatError) as error:
            raise LabelMapError(f"--label-map {self.label_map}: {one_line(error)}") from None


def check_dataset(dataset: CocoDataset) -> None:
    """DatasetError unless the dataset's JSON file reads as COCO and its image folder exists."""
    where = f"--coco-dataset {dataset.name}"
    if not dataset.image_root.is_dir():
        raise DatasetError(f"{where}: no image folder {dataset.image_root}")
    try:
        document = json.loads(dataset.json_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(f"{where}: cannot read {dataset.json_file}: {one_line(error)}") from None
    if not isinstance(document, dict) or not {"images", "categories"} <= document.keys():
        raise DatasetError(f"{where}: {dataset.json_file} is not COCO (no images/categories)")


def one_line(error: BaseException) -> str:
    """An error's message on one line (YAML and JSON parsers write several)."""
    return " ".join(str(error).split())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One command-line option per settings field, from the field's type and metadata."""
    for setting in dataclasses.fields(ExportSettings):
        extra = dict(setting.metadata["argparse"])
        help_text = setting.metadata["help"]
        if setting.name == "options":
            parser.add_argument("options", nargs=argparse.REMAINDER, help=help_text)
        elif setting.name == "datasets":
            parser.add_argument(
                "--coco-dataset",
                dest="datasets",
                nargs=3,
                action="append",
                default=[],
                metavar=("NAME", "JSON", "IMAGE_ROOT"),
                help=help_text,
            )
        elif setting.type == "bool":
            parser.add_argument(flag(setting.name), action="store_true", help=help_text)
        else:
            default = setting.default if "required" not in extra else None
            suffix = f" (default: {default})" if default not in (None, "") else ""
            if "type" not in extra:  # a field may name its own (``precision``)
                extra["type"] = value_type(setting.type)
            parser.add_argument(
                flag(setting.name), default=default, help=help_text + suffix, **extra
            )


def flag(name: str) -> str:
    """``--name-with-dashes`` for a field name."""
    return "--" + name.replace("_", "-")


def value_type(annotation: str):
    """The argparse type of a field's annotation (``from __future__`` makes it a string)."""
    base = annotation.replace(" | None", "")
    return {"int": int, "float": float, "Path": Path, "str": str}[base]


def from_arguments(arguments: argparse.Namespace) -> ExportSettings:
    """The settings a parsed command line asks for."""
    values = {
        setting.name: getattr(arguments, setting.name)
        for setting in dataclasses.fields(ExportSettings)
    }
    options = values["options"]
    values["options"] = tuple(options[1:] if options[:1] == ["--"] else options)
    values["datasets"] = tuple(
        CocoDataset(name, Path(json_file), Path(root))
        for name, json_file, root in values["datasets"]
    )
    return ExportSettings(**values)
