"""Whether a model repository can be served, and what is wrong with it if not.

A serving replica mounts a repository it did not write (an export job's volume), so before
tritonserver starts, the launcher checks that it is there and complete: each pipeline's four
configs, a detector version with its ``export_info.json``, written in a layout this server
reads (``names.REPOSITORY_LAYOUT``).  Triton would otherwise fail on a half-written one with
a screenful of errors, or serve part of it.  Each problem is one line naming the pipeline
and the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from d2_triton.names import EXPORT_INFO_FILE, REPOSITORY_LAYOUT, PipelineNames, model_version


def repository_problems(repository: Path) -> list[str]:
    """What keeps ``repository`` from being served (empty: nothing), one line each."""
    if not repository.is_dir():
        return [f"{repository} does not exist (no repository mounted or exported there)"]
    pipelines = PipelineNames.in_repository(repository)
    if not pipelines:
        return [f"{repository} holds no exported model (no ensemble config.pbtxt)"]
    return [
        problem for pipeline in pipelines for problem in _pipeline_problems(repository, pipeline)
    ]


def _pipeline_problems(repository: Path, pipeline: PipelineNames) -> list[str]:
    missing = [
        f"{model}/config.pbtxt"
        for model in pipeline.models().values()
        if not (repository / model / "config.pbtxt").is_file()
    ]
    if missing:
        return [
            f"pipeline {pipeline.name!r} is incomplete (an export that did not finish?): "
            f"{', '.join(missing)} missing"
        ]
    folder = repository / pipeline.detector
    versions = [v for v in (model_version(c.name) for c in folder.iterdir() if c.is_dir()) if v]
    if not versions:
        return [
            f"pipeline {pipeline.name!r} has no detector version in {folder} (an export "
            "that did not finish?)"
        ]
    info_path = folder / str(max(versions)) / EXPORT_INFO_FILE
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return [f"pipeline {pipeline.name!r}: cannot read {info_path}: {error}"]
    layout = info.get("repository_layout", 1)  # exports before the field are layout 1
    if layout != REPOSITORY_LAYOUT:
        return [
            f"pipeline {pipeline.name!r} was exported in repository layout {layout}; this "
            f"server reads layout {REPOSITORY_LAYOUT}: export it again with this version"
        ]
    return []
