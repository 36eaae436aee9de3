"""Write traced stages as the files a detector version serves, and check them.

TorchScript stages are saved as ``NAME.pt``; OpenVINO stages are converted from their trace
and saved as ``NAME.xml`` + ``NAME.bin`` at float32 (OpenVINO's default would halve the
weights to float16).  ``stages.json`` (:class:`d2_triton.serving.stages.StagePlan`) ties them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from d2_triton.serving.stages import PLAN_FILE, Stage, StagedModel, StagePlan, available_cores
from export_tools.errors import TraceMismatchError
from export_tools.trace.split import TracedStage

# The exporter's own check of a staged export on its sample image (the served results are
# measured against Detectron2 by the parity tests and the accuracy benchmark).
BOX_TOLERANCE_PX = 0.5
SCORE_TOLERANCE = 1e-3
# Instances may appear or vanish only at a cut: scores this close to the lowest one kept.
CUT_TOLERANCE = 1e-3


def single_stage(traced: torch.jit.ScriptModule, image: torch.Tensor, fields) -> TracedStage:
    """The whole traced model as a one-stage plan (the bit-exact export)."""
    stage = Stage("model", "torchscript", "", ("image",), tuple(fields))
    return TracedStage(stage, traced, (image,))


def write_stages(stages: list[TracedStage], fields, folder: Path) -> list[Path]:
    """Save every stage and ``stages.json`` into ``folder``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written, planned = [], []
    for traced in stages:
        if traced.runtime == "torchscript":
            path = folder / f"{traced.stage.name}.pt"
            torch.jit.save(traced.module, str(path))
            written.append(path)
        else:
            path = folder / f"{traced.stage.name}.xml"
            _save_openvino(traced, path)
            written += [path, path.with_suffix(".bin")]
        stage = traced.stage
        planned.append(Stage(stage.name, stage.runtime, path.name, stage.inputs, stage.outputs))
    plan = StagePlan("image", tuple(planned), tuple(fields))
    (folder / PLAN_FILE).write_text(plan.to_json(), encoding="utf-8")
    return [*written, folder / PLAN_FILE]


def _save_openvino(traced: TracedStage, path: Path) -> None:
    import openvino

    converted = openvino.convert_model(traced.module, example_input=traced.example_inputs)
    openvino.save_model(converted, str(path), compress_to_fp16=False)


def verify_stages(folder: Path, expected: dict[str, torch.Tensor], image: torch.Tensor) -> int:
    """Load the written plan as the server does and compare it with ``expected`` (eager).

    Boxes within 0.5 px and scores within 1e-3 of the eager instance of the same class with
    the closest box; an instance may be missing on either side only if its score is within
    1e-3 of the lowest score kept (where the score threshold or top-k cuts).  Returns how
    many instances sat at the cut.

    Raises:
        TraceMismatchError: any other difference.
    """
    model = StagedModel.load(folder, torch.device("cpu"), available_cores())
    with torch.no_grad():
        served = dict(zip(model.plan.outputs, model(image), strict=True))
    if "scores" not in expected:
        return 0
    cut = float(expected["scores"].min()) if len(expected["scores"]) else 0.0
    at_cut = 0
    unmatched = set(range(len(served["scores"])))
    for index in range(len(expected["scores"])):
        candidates = [
            j for j in unmatched if served["pred_classes"][j] == expected["pred_classes"][index]
        ]
        errors = [
            float((served["pred_boxes"][j] - expected["pred_boxes"][index]).abs().max())
            for j in candidates
        ]
        if candidates and min(errors) <= BOX_TOLERANCE_PX:
            best = candidates[errors.index(min(errors))]
            score_error = abs(float(served["scores"][best] - expected["scores"][index]))
            if score_error > SCORE_TOLERANCE:
                raise TraceMismatchError(f"stages: instance {index} score off by {score_error}")
            unmatched.discard(best)
        elif float(expected["scores"][index]) - cut <= CUT_TOLERANCE:
            at_cut += 1
        else:
            raise TraceMismatchError(f"stages: no match for instance {index} of the eager model")
    for j in unmatched:
        if float(served["scores"][j]) - cut > CUT_TOLERANCE:
            raise TraceMismatchError(f"stages: served instance {j} has no eager counterpart")
        at_cut += 1
    return at_cut
