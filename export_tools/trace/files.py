"""Write traced stages as the files a detector version serves, and check them.

TorchScript stages are saved as ``NAME.pt``; OpenVINO stages are converted from their trace
and saved as ``NAME.xml`` + ``NAME.bin`` at float32 (OpenVINO's default would halve the
weights to float16).  ``stages.json`` (:class:`d2_triton.serving.stages.StagePlan`) ties them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from d2_triton.names import Precision
from d2_triton.parity import rule
from d2_triton.serving import torchscript
from d2_triton.serving.stages import PLAN_FILE, Stage, StagedModel, StagePlan, available_cores
from export_tools.errors import STAGES_MISMATCH, TraceMismatchError
from export_tools.trace.split import TracedStage


def single_stage(traced: torch.jit.ScriptModule, image: torch.Tensor, fields) -> TracedStage:
    """The whole traced model as a one-stage plan (the bit-exact export)."""
    stage = Stage("model", "torchscript", "", ("image",), tuple(fields))
    return TracedStage(stage, traced, (image,))


def write_stages(
    stages: list[TracedStage], fields, folder: Path, precision: Precision = Precision.F32
) -> list[Path]:
    """Save every stage and ``stages.json`` into ``folder``; returns the files written.

    The plan records ``precision``, what the server's OpenVINO stages compute in.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written, planned = [], []
    for traced in stages:
        if traced.runtime == "torchscript":
            path = folder / f"{traced.stage.name}.pt"
            with torchscript.on_purpose():
                torch.jit.save(traced.module, str(path))
            written.append(path)
        else:
            path = folder / f"{traced.stage.name}.xml"
            _save_openvino(traced, path)
            written += [path, path.with_suffix(".bin")]
        stage = traced.stage
        planned.append(Stage(stage.name, stage.runtime, path.name, stage.inputs, stage.outputs))
    plan = StagePlan("image", tuple(planned), tuple(fields), precision)
    (folder / PLAN_FILE).write_text(plan.to_json(), encoding="utf-8")
    return [*written, folder / PLAN_FILE]


def _save_openvino(traced: TracedStage, path: Path) -> None:
    import openvino

    converted = openvino.convert_model(traced.module, example_input=traced.example_inputs)
    openvino.save_model(converted, str(path), compress_to_fp16=False)


def verify_stages(folder: Path, expected: dict[str, torch.Tensor], image: torch.Tensor) -> int:
    """Load the written plan as the server does, at float32, and compare it with ``expected``.

    ``expected`` is the eager model's answer; a reduced precision is the server's to apply,
    not the trace's, so the check is at float32.  Instances are paired as the parity tests
    pair them (``d2_triton.parity.rule``: same class, box and score within tolerance); one
    may be unpaired on either side only if its score sits at the cut (the lowest score
    kept), or a swapped tie (``rule.take_swapped_ties``).  Returns how many did.

    Raises:
        TraceMismatchError: any other difference.
    """
    model = StagedModel.load(folder, torch.device("cpu"), available_cores(), Precision.F32)
    with torch.no_grad():
        served = dict(zip(model.plan.outputs, model(image), strict=True))
    if "sem_seg" in expected:
        _verify_logits(served["sem_seg"], expected["sem_seg"])
    if "scores" not in expected:
        return 0
    eager, staged = _instances(expected), _instances(served)
    cut = float(eager.scores.min()) if len(eager.scores) else 0.0
    pairing = rule.pair_instances(eager, staged, within_tolerance=True)
    swapped = rule.take_swapped_ties(pairing, eager, staged)
    for side, answer, unpaired in (
        ("eager", eager, pairing.unpaired_reference),
        ("staged", staged, pairing.unpaired_other),
    ):
        for index in unpaired:
            score = float(answer.scores[index])
            if not rule.at_cut(score, cut):
                raise TraceMismatchError(
                    f"{STAGES_MISMATCH}{side} instance {index} (score {score:.4f}) "
                    "has no counterpart within the box and score tolerances"
                )
    return len(pairing.unpaired_reference) + len(pairing.unpaired_other) + swapped


def _verify_logits(served: torch.Tensor, expected: torch.Tensor) -> None:
    """TraceMismatchError unless the staged semantic logits are eager's, within rounding."""
    scale = max(1.0, float(expected.abs().max()))
    if served.shape != expected.shape:
        raise TraceMismatchError(
            f"{STAGES_MISMATCH}semantic logits {list(served.shape)}, eager {list(expected.shape)}"
        )
    error = float((served - expected).abs().max())
    if error > rule.LOGITS_TOLERANCE * scale:
        raise TraceMismatchError(
            f"{STAGES_MISMATCH}semantic logits differ from eager by {error:.2e}"
        )


@dataclass(frozen=True)
class _Answer:
    classes: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


def _instances(fields: dict[str, torch.Tensor]) -> _Answer:
    """The detector's output tensors as the arrays ``rule`` pairs."""
    return _Answer(
        fields["pred_classes"].numpy(), fields["pred_boxes"].numpy(), fields["scores"].numpy()
    )
