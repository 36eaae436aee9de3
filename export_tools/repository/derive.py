"""Derive a model repository from an exported one, changing only config settings.

Tuning runs (instance counts, threads), load tests (a smaller input resolution) and
deployments with other limits need the same exported model under different settings;
re-exporting would re-trace it.  The detector's model files are hard-linked, not copied.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from d2_triton.model_config import DetectorParameters, PreprocessParameters
from d2_triton.names import PipelineNames
from export_tools.repository import configs


@dataclass(frozen=True)
class Overrides:
    """Settings to change; None keeps the source's."""

    detector_instances: int | None = None
    detector_threads: int | None = None
    preprocess_instances: int | None = None
    postprocess_instances: int | None = None
    min_size_test: int | None = None
    max_size_test: int | None = None
    max_image_bytes: int | None = None
    max_image_pixels: int | None = None
    detector_warmup: bool | None = None


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link the model files (large, never edited), copy the rest."""
    if source.endswith((".pt", ".bin")):
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copy2(source, target)


def _edit(path: Path, count: int | None, parameters: type | None = None, **changes) -> None:
    """Set the instance count and replace typed parameters (None leaves a value as it is)."""
    config = configs.parse_pbtxt(path.read_text())
    if count is not None:
        config.instance_group[0].count = count
    changes = {key: value for key, value in changes.items() if value is not None}
    if parameters is not None and changes:
        typed = configs.parameters_of(parameters, config)
        configs.set_parameters(config, replace(typed, **changes))
    path.write_text(configs.to_pbtxt(config))


def derive(source: Path, target: Path, overrides: Overrides) -> Path:
    """A copy of ``source`` at ``target`` (replaced if present) with ``overrides`` applied.

    The overrides apply to every pipeline in the repository.
    """
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        source, target, copy_function=_link_or_copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    for pipeline in PipelineNames.in_repository(target):
        _edit(
            target / pipeline.preprocess / "config.pbtxt",
            overrides.preprocess_instances,
            PreprocessParameters,
            min_size_test=overrides.min_size_test,
            max_size_test=overrides.max_size_test,
            max_image_bytes=overrides.max_image_bytes,
            max_image_pixels=overrides.max_image_pixels,
        )
        _edit(
            target / pipeline.detector / "config.pbtxt",
            overrides.detector_instances,
            DetectorParameters,
            intra_op_threads=overrides.detector_threads,
        )
        _edit(target / pipeline.postprocess / "config.pbtxt", overrides.postprocess_instances)
        _edit_warmup(target, pipeline, keep=overrides.detector_warmup is not False)
    return target


def _edit_warmup(repository: Path, pipeline: PipelineNames, keep: bool) -> None:
    """Drop the detector's warmup, or warm it up at the (possibly changed) input size.

    Warming up an 800-pixel image for a model that serves 320-pixel ones would cost seconds
    at every load and leave the served shape cold.
    """
    preprocess = configs.parse_pbtxt(
        (repository / pipeline.preprocess / "config.pbtxt").read_text()
    )
    size = configs.parameters_of(PreprocessParameters, preprocess)
    path = repository / pipeline.detector / "config.pbtxt"
    config = configs.parse_pbtxt(path.read_text())
    if keep:
        configs.resize_warmup(config, configs.warmup_size(size.min_size_test, size.max_size_test))
    else:
        del config.model_warmup[:]
    path.write_text(configs.to_pbtxt(config))
