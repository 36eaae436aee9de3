"""Generate the config.pbtxt of each model in the repository from what was exported.

Configs are built as ``ModelConfig`` protobuf messages (Triton's own schema, shipped in
tritonclient) and printed with protobuf's text format, so a generated file is valid by
construction and a test can parse it back.

All four models use ``max_batch_size: 0``: images of different sizes cannot share a batch
without padding, and Detectron2's traced graph handles one image per call, so each request
is one image.  Concurrency comes from pipelining the ensemble's steps and from instance
counts instead (see benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import np_to_triton_dtype

from d2_triton import carried, model_config, names
from d2_triton.model_config import (
    DetectorParameters,
    EnsembleParameters,
    PostprocessParameters,
    PreprocessParameters,
)
from d2_triton.names import DETECTOR_OUTPUTS, PipelineNames

DEFAULT = PipelineNames()

Parameters = TypeVar("Parameters")


@dataclass(frozen=True)
class ModelOutputs:
    """What the exported detector produces, which shapes every config downstream."""

    has_masks: bool
    mask_resolution: int = 28
    has_instances: bool = True
    sem_seg_classes: int = 0  # classes of the semantic head; 0: no semantic head
    # The carried outputs the model returns (``d2_triton.carried``), by name: the shape of
    # one instance's, e.g. ``{"keypoints": (17, 3)}``.
    carried: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def carried_dims(self) -> list[tuple[str, int, list[int]]]:
        """The carried outputs' tensors, the same out of the detector and of the ensemble."""
        return [
            (name, _config_type(carried.BY_NAME[name].dtype), [-1, *shape])
            for name, shape in self.carried.items()
        ]

    @property
    def segmentation(self) -> str:
        """``none``, ``semantic`` (a semantic head alone) or ``panoptic`` (with instances)."""
        if not self.sem_seg_classes:
            return "none"
        return "panoptic" if self.has_instances else "semantic"


def _config_type(dtype: str) -> int:
    """A config's data type (``TYPE_FP32``) for a numpy type's name, by tritonclient's map."""
    return mc.DataType.Value("TYPE_" + np_to_triton_dtype(np.dtype(dtype)))


@dataclass(frozen=True)
class InstanceSettings:
    """Where and how many copies of each model run (tuned in benchmarks/)."""

    detector_kind: str = "cpu"  # "cpu" or "gpu"
    detector_count: int = 1
    preprocess_count: int = 1
    postprocess_count: int = 1


def _tensor(container, name: str, data_type: int, dims: list[int]) -> None:
    tensor = container.add()
    tensor.name = name
    tensor.data_type = data_type
    tensor.dims.extend(dims)


def _python_model(name: str, count: int, kind: int = mc.ModelInstanceGroup.KIND_CPU):
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=0)
    config.instance_group.add(kind=kind, count=count)
    return config


def set_parameters(config: mc.ModelConfig, parameters: object) -> None:
    """Write a typed parameters dataclass into the config's parameters block."""
    for key, value in model_config.to_parameters(parameters).items():
        config.parameters[key].string_value = value


def read_config(path: Path) -> mc.ModelConfig:
    """A config.pbtxt file as a ModelConfig message."""
    return parse_pbtxt(path.read_text(encoding="utf-8"))


def read_parameters(cls: type[Parameters], path: Path) -> Parameters:
    """The typed parameters (``d2_triton.model_config``) of a config.pbtxt file."""
    return parameters_of(cls, read_config(path))


def parameters_of(cls: type[Parameters], config: mc.ModelConfig) -> Parameters:
    """The typed parameters of a parsed ModelConfig."""
    return model_config.from_parameters(
        cls, {key: value.string_value for key, value in config.parameters.items()}
    )


def _detector_output_dims(outputs: ModelOutputs) -> list[tuple[str, int, list[int]]]:
    dims = []
    if outputs.has_instances:
        dims.append((DETECTOR_OUTPUTS["pred_boxes"], mc.TYPE_FP32, [-1, 4]))
        dims.append((DETECTOR_OUTPUTS["scores"], mc.TYPE_FP32, [-1]))
        dims.append((DETECTOR_OUTPUTS["pred_classes"], mc.TYPE_INT64, [-1]))
    if outputs.has_masks:
        size = outputs.mask_resolution
        dims.append((names.MASK_PROBS, mc.TYPE_FP32, [-1, 1, size, size]))
    dims += outputs.carried_dims()
    if outputs.sem_seg_classes:
        dims.append((names.SEM_SEG_LOGITS, mc.TYPE_FP32, [outputs.sem_seg_classes, -1, -1]))
    return dims


def preprocess_config(
    parameters: PreprocessParameters, count: int = 1, pipeline: PipelineNames = DEFAULT
) -> mc.ModelConfig:
    """``preprocess``: encoded bytes in; the model's image and the two sizes out."""
    config = _python_model(pipeline.preprocess, count)
    _tensor(config.input, names.IMAGE_BYTES, mc.TYPE_UINT8, [-1])
    _tensor(config.output, names.IMAGE, mc.TYPE_UINT8, [3, -1, -1])
    _tensor(config.output, names.ORIGINAL_SIZE, mc.TYPE_INT32, [2])
    _tensor(config.output, names.RESIZED_SIZE, mc.TYPE_INT32, [2])
    set_parameters(config, parameters)
    return config


def detector_config(
    outputs: ModelOutputs,
    parameters: DetectorParameters,
    instances: InstanceSettings,
    warmup_hw: tuple[int, int] | None = None,
    pipeline: PipelineNames = DEFAULT,
) -> mc.ModelConfig:
    """``detector``: the model's image in; its raw outputs out; warmed up on ``warmup_hw``."""
    kind = (
        mc.ModelInstanceGroup.KIND_GPU
        if instances.detector_kind == "gpu"
        else mc.ModelInstanceGroup.KIND_CPU
    )
    config = _python_model(pipeline.detector, instances.detector_count, kind)
    _tensor(config.input, names.IMAGE, mc.TYPE_UINT8, [3, -1, -1])
    for name, data_type, dims in _detector_output_dims(outputs):
        _tensor(config.output, name, data_type, dims)
    set_parameters(config, parameters)
    if warmup_hw is not None:
        warmup = config.model_warmup.add(batch_size=1, count=WARMUP_RUNS)
        image = warmup.inputs[names.IMAGE]
        image.data_type = mc.TYPE_UINT8
        image.random_data = True
        resize_warmup(config, warmup_hw)
    return config


def resize_warmup(config: mc.ModelConfig, warmup_hw: tuple[int, int]) -> None:
    """Give the detector's warmup image (if it has one) the model input size ``warmup_hw``."""
    for warmup in config.model_warmup:
        warmup.name = f"image_{warmup_hw[0]}x{warmup_hw[1]}"
        dims = warmup.inputs[names.IMAGE].dims
        del dims[:]
        dims.extend([3, *warmup_hw])


# The detector runs its warmup image this many times at load: OpenVINO's and oneDNN's first
# two calls on a new shape are both slower than the rest (benchmarks/README.md).
WARMUP_RUNS = 2


def warmup_size(min_size_test: int, max_size_test: int) -> tuple[int, int]:
    """The model input of a 4:3 landscape photo, resized as Detectron2 does: (H, W).

    The detector's ``model_warmup`` runs one such image before the model is ready, so the
    first request does not pay for OpenVINO's and oneDNN's first-call preparation.
    """
    height = min_size_test
    width = int(min_size_test * 4 / 3 + 0.5)
    if width > max_size_test:
        height, width = int(max_size_test * 3 / 4 + 0.5), max_size_test
    return height, width


def postprocess_config(
    outputs: ModelOutputs,
    parameters: PostprocessParameters,
    count: int = 1,
    pipeline: PipelineNames = DEFAULT,
) -> mc.ModelConfig:
    """``postprocess``: the detector's outputs and the sizes in; the ensemble's outputs out."""
    config = _python_model(pipeline.postprocess, count)
    for name, data_type, dims in _detector_output_dims(outputs):
        _tensor(config.input, name, data_type, dims)
    _tensor(config.input, names.ORIGINAL_SIZE, mc.TYPE_INT32, [2])
    _tensor(config.input, names.RESIZED_SIZE, mc.TYPE_INT32, [2])
    for name, data_type, dims in ensemble_output_dims(outputs):
        _tensor(config.output, name, data_type, dims)
    if not outputs.has_masks and not outputs.sem_seg_classes:
        parameters = replace(parameters, default_mask_format="none")
    set_parameters(config, parameters)
    return config


def ensemble_output_dims(outputs: ModelOutputs) -> list[tuple[str, int, list[int]]]:
    """The ensemble's (= postprocess's) outputs: what a client can ask for."""
    dims = [
        (names.BOXES, mc.TYPE_FP32, [-1, 4]),
        (names.SCORES, mc.TYPE_FP32, [-1]),
        (names.CLASSES, mc.TYPE_INT32, [-1]),
        (names.LABELS, mc.TYPE_STRING, [-1]),
        (names.IMAGE_SIZE, mc.TYPE_INT32, [2]),
    ]
    if outputs.has_masks:
        dims.append((names.MASKS_RLE, mc.TYPE_STRING, [-1]))
        dims.append((names.MASKS, mc.TYPE_UINT8, [-1, -1, -1]))
    dims += outputs.carried_dims()
    if outputs.sem_seg_classes:
        dims += SEGMENT_OUTPUT_DIMS
    return dims


SEGMENT_OUTPUT_DIMS = [
    (names.SEGMENT_IDS, mc.TYPE_INT32, [-1]),
    (names.SEGMENT_CLASSES, mc.TYPE_INT32, [-1]),
    (names.SEGMENT_LABELS, mc.TYPE_STRING, [-1]),
    (names.SEGMENT_IS_THING, mc.TYPE_BOOL, [-1]),
    (names.SEGMENT_SCORES, mc.TYPE_FP32, [-1]),
    (names.SEGMENT_AREAS, mc.TYPE_INT64, [-1]),
    (names.SEGMENTS_RLE, mc.TYPE_STRING, [-1]),
    (names.SEGMENT_MAP, mc.TYPE_INT32, [-1, -1]),
]


def ensemble_config(
    outputs: ModelOutputs,
    parameters: EnsembleParameters | None = None,
    pipeline: PipelineNames = DEFAULT,
) -> mc.ModelConfig:
    """``ensemble``: the three models joined; image bytes in, detections out."""
    config = mc.ModelConfig(name=pipeline.ensemble, platform="ensemble", max_batch_size=0)
    _tensor(config.input, names.IMAGE_BYTES, mc.TYPE_UINT8, [-1])
    for name, data_type, dims in ensemble_output_dims(outputs):
        _tensor(config.output, name, data_type, dims)
    steps = config.ensemble_scheduling.step
    preprocess = steps.add(model_name=pipeline.preprocess, model_version=-1)
    preprocess.input_map[names.IMAGE_BYTES] = names.IMAGE_BYTES
    for name in (names.IMAGE, names.ORIGINAL_SIZE, names.RESIZED_SIZE):
        preprocess.output_map[name] = f"_{name}"
    detector = steps.add(model_name=pipeline.detector, model_version=-1)
    detector.input_map[names.IMAGE] = f"_{names.IMAGE}"
    postprocess = steps.add(model_name=pipeline.postprocess, model_version=-1)
    for name, _, _ in _detector_output_dims(outputs):
        detector.output_map[name] = f"_raw_{name}"
        postprocess.input_map[name] = f"_raw_{name}"
    for name in (names.ORIGINAL_SIZE, names.RESIZED_SIZE):
        postprocess.input_map[name] = f"_{name}"
    for name, _, _ in ensemble_output_dims(outputs):
        postprocess.output_map[name] = name
    if parameters is not None:
        set_parameters(config, parameters)
    return config


def to_pbtxt(config: mc.ModelConfig) -> str:
    """The config in protobuf text format, as config.pbtxt holds it."""
    return text_format.MessageToString(config)


def parse_pbtxt(text: str) -> mc.ModelConfig:
    """A config.pbtxt's text as a ModelConfig message."""
    return text_format.Parse(text, mc.ModelConfig())
