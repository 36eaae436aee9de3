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

import json
from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from d2_triton import schema


@dataclass(frozen=True)
class ModelOutputs:
    """What the exported detector produces, which shapes every config downstream."""

    has_masks: bool
    mask_resolution: int = 28
    num_keypoints: int = 0

    @property
    def has_keypoints(self) -> bool:
        return self.num_keypoints > 0


@dataclass(frozen=True)
class InstanceSettings:
    """Where and how many copies of each model run (tuned in benchmarks/)."""

    detector_kind: str = "cpu"  # "cpu" or "gpu"
    detector_count: int = 1
    detector_threads: int = 0  # 0: torch's default (all cores)
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


def _set_parameters(config: mc.ModelConfig, parameters: dict[str, object]) -> None:
    for key, value in parameters.items():
        config.parameters[key].string_value = str(value)


def _detector_output_dims(outputs: ModelOutputs) -> list[tuple[str, int, list[int]]]:
    dims = [
        ("boxes", mc.TYPE_FP32, [-1, 4]),
        ("scores", mc.TYPE_FP32, [-1]),
        ("classes", mc.TYPE_INT64, [-1]),
    ]
    if outputs.has_masks:
        size = outputs.mask_resolution
        dims.append(("mask_probs", mc.TYPE_FP32, [-1, 1, size, size]))
    if outputs.has_keypoints:
        dims.append(("keypoints", mc.TYPE_FP32, [-1, outputs.num_keypoints, 3]))
    return dims


def preprocess_config(
    *,
    min_size_test: int,
    max_size_test: int,
    input_format: str,
    max_image_bytes: int,
    max_image_pixels: int,
    label_map_file: str,
    count: int = 1,
) -> mc.ModelConfig:
    """``label_map_file`` (relative to the model's folder) lets preprocess refuse a request
    whose postprocess options are bad before the detector spends a second on it."""
    config = _python_model(schema.PREPROCESS_MODEL, count)
    _tensor(config.input, "image_bytes", mc.TYPE_UINT8, [-1])
    _tensor(config.output, "image", mc.TYPE_UINT8, [3, -1, -1])
    _tensor(config.output, "original_size", mc.TYPE_INT32, [2])
    _tensor(config.output, "resized_size", mc.TYPE_INT32, [2])
    _set_parameters(
        config,
        {
            "min_size_test": min_size_test,
            "max_size_test": max_size_test,
            "input_format": input_format,
            "max_image_bytes": max_image_bytes,
            "max_image_pixels": max_image_pixels,
            "label_map": label_map_file,
        },
    )
    return config


def detector_config(
    *,
    outputs: ModelOutputs,
    output_fields: list[str],
    torchscript_file: str,
    weights_source: str,
    instances: InstanceSettings,
) -> mc.ModelConfig:
    kind = (
        mc.ModelInstanceGroup.KIND_GPU
        if instances.detector_kind == "gpu"
        else mc.ModelInstanceGroup.KIND_CPU
    )
    config = _python_model(schema.DETECTOR_MODEL, instances.detector_count, kind)
    _tensor(config.input, "image", mc.TYPE_UINT8, [3, -1, -1])
    for name, data_type, dims in _detector_output_dims(outputs):
        _tensor(config.output, name, data_type, dims)
    _set_parameters(
        config,
        {
            "torchscript_file": torchscript_file,
            "output_fields": _json_list(output_fields),
            "intra_op_threads": instances.detector_threads,
            "weights_source": weights_source,
        },
    )
    return config


def postprocess_config(
    *,
    outputs: ModelOutputs,
    label_map_file: str,
    default_score_threshold: float,
    default_mask_format: str,
    count: int = 1,
) -> mc.ModelConfig:
    config = _python_model(schema.POSTPROCESS_MODEL, count)
    for name, data_type, dims in _detector_output_dims(outputs):
        _tensor(config.input, name, data_type, dims)
    _tensor(config.input, "original_size", mc.TYPE_INT32, [2])
    _tensor(config.input, "resized_size", mc.TYPE_INT32, [2])
    for name, data_type, dims in ensemble_output_dims(outputs):
        _tensor(config.output, name, data_type, dims)
    _set_parameters(
        config,
        {
            "label_map": label_map_file,
            "default_score_threshold": default_score_threshold,
            "default_mask_format": default_mask_format if outputs.has_masks else "none",
        },
    )
    return config


def ensemble_output_dims(outputs: ModelOutputs) -> list[tuple[str, int, list[int]]]:
    """The ensemble's (= postprocess's) outputs: what a client can ask for."""
    dims = [
        (schema.BOXES, mc.TYPE_FP32, [-1, 4]),
        (schema.SCORES, mc.TYPE_FP32, [-1]),
        (schema.CLASSES, mc.TYPE_INT32, [-1]),
        (schema.LABELS, mc.TYPE_STRING, [-1]),
        (schema.IMAGE_SIZE, mc.TYPE_INT32, [2]),
    ]
    if outputs.has_masks:
        dims.append((schema.MASKS_RLE, mc.TYPE_STRING, [-1]))
        dims.append((schema.MASKS, mc.TYPE_UINT8, [-1, -1, -1]))
    if outputs.has_keypoints:
        dims.append((schema.KEYPOINTS, mc.TYPE_FP32, [-1, outputs.num_keypoints, 3]))
    return dims


def ensemble_config(outputs: ModelOutputs) -> mc.ModelConfig:
    config = mc.ModelConfig(name=schema.ENSEMBLE_MODEL, platform="ensemble", max_batch_size=0)
    _tensor(config.input, schema.IMAGE_BYTES, mc.TYPE_UINT8, [-1])
    for name, data_type, dims in ensemble_output_dims(outputs):
        _tensor(config.output, name, data_type, dims)
    steps = config.ensemble_scheduling.step
    preprocess = steps.add(model_name=schema.PREPROCESS_MODEL, model_version=-1)
    preprocess.input_map["image_bytes"] = schema.IMAGE_BYTES
    for name in ("image", "original_size", "resized_size"):
        preprocess.output_map[name] = f"_{name}"
    detector = steps.add(model_name=schema.DETECTOR_MODEL, model_version=-1)
    detector.input_map["image"] = "_image"
    postprocess = steps.add(model_name=schema.POSTPROCESS_MODEL, model_version=-1)
    for name, _, _ in _detector_output_dims(outputs):
        detector.output_map[name] = f"_raw_{name}"
        postprocess.input_map[name] = f"_raw_{name}"
    postprocess.input_map["original_size"] = "_original_size"
    postprocess.input_map["resized_size"] = "_resized_size"
    for name, _, _ in ensemble_output_dims(outputs):
        postprocess.output_map[name] = name
    return config


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_pbtxt(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def _json_list(values: list[str]) -> str:
    return json.dumps(list(values))
