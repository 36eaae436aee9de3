"""Run an exported detector that is a chain of stages, each TorchScript or OpenVINO.

The exporter splits a Detectron2 model where its static, convolution-heavy parts (backbone,
FPN, RPN/RetinaNet head, mask and keypoint heads) meet the dynamic glue (proposal selection,
NMS, ROI pooling, box decoding).  Each part is traced to TorchScript; the static ones are
then converted to OpenVINO, which runs them faster on a CPU at float32.  ``stages.json`` in
the version folder says which file computes which named tensors from which::

    {"input": "image",
     "stages": [{"name": "normalize", "runtime": "torchscript", "file": "normalize.pt",
                 "inputs": ["image"], "outputs": ["padded"]}, ...],
     "outputs": ["pred_boxes", "scores", "pred_classes", "pred_masks"]}

A bit-exact export (``--exact``) is the same plan with one TorchScript stage.  This module
needs torch, and openvino only when a stage runs on it; not Detectron2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from d2_triton.errors import ModelConfigError

PLAN_FILE = "stages.json"
RUNTIMES = ("torchscript", "openvino")


@dataclass(frozen=True)
class Stage:
    """One stage of the chain.

    Attributes:
        name: what it computes, for logs.
        runtime: ``torchscript`` or ``openvino``.
        file: its file in the version folder (OpenVINO: the IR's ``.xml``, ``.bin`` beside).
        inputs: names of the tensors it takes, in order.
        outputs: names it gives its outputs, in order.
    """

    name: str
    runtime: str
    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class StagePlan:
    """The chain: its input tensor, its stages in order, the tensors it returns.

    Attributes:
        input: name of the image tensor the first stage reads.
        stages: the stages, in the order they run.
        outputs: names of the tensors returned, in order.
    """

    input: str
    stages: tuple[Stage, ...]
    outputs: tuple[str, ...]

    def __post_init__(self) -> None:
        """Every stage reads only tensors that exist by then; every output is produced."""
        known = {self.input}
        for stage in self.stages:
            if stage.runtime not in RUNTIMES:
                raise ModelConfigError(f"stage {stage.name}: unknown runtime {stage.runtime!r}")
            missing = [name for name in stage.inputs if name not in known]
            if missing:
                raise ModelConfigError(f"stage {stage.name} reads unknown tensors {missing}")
            known.update(stage.outputs)
        missing = [name for name in self.outputs if name not in known]
        if missing:
            raise ModelConfigError(f"no stage produces the outputs {missing}")

    def to_json(self) -> str:
        """The plan as ``stages.json`` stores it."""
        stages = [
            {
                "name": stage.name,
                "runtime": stage.runtime,
                "file": stage.file,
                "inputs": list(stage.inputs),
                "outputs": list(stage.outputs),
            }
            for stage in self.stages
        ]
        document = {"input": self.input, "stages": stages, "outputs": list(self.outputs)}
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StagePlan:
        """Parse ``stages.json``; ModelConfigError if it is not a valid plan."""
        try:
            document = json.loads(text)
            stages = tuple(
                Stage(
                    name=str(stage["name"]),
                    runtime=str(stage["runtime"]),
                    file=str(stage["file"]),
                    inputs=tuple(stage["inputs"]),
                    outputs=tuple(stage["outputs"]),
                )
                for stage in document["stages"]
            )
            return cls(str(document["input"]), stages, tuple(document["outputs"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ModelConfigError(f"invalid {PLAN_FILE}: {error}") from None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the host's count)."""
    return len(os.sched_getaffinity(0))


def threads_per_instance(configured: int, instances: int) -> int:
    """Threads for one detector instance: ``configured``, or the cores shared out if 0."""
    if configured > 0:
        return configured
    return max(1, available_cores() // max(1, instances))


class StagedModel:
    """A loaded plan, called like the single TorchScript module it replaces."""

    def __init__(self, folder: Path, plan: StagePlan, device: torch.device, threads: int):
        """Load every stage of ``plan`` from ``folder``, using ``threads`` threads on CPU.

        Args:
            folder: the version folder holding the stage files.
            plan: the chain to load.
            device: torch's device for TorchScript stages; OpenVINO stages run on the CPU.
            threads: intra-op threads for torch and inference threads for OpenVINO.
        """
        self.plan = plan
        self.device = device
        self._runners = [self._load(folder, stage, threads) for stage in plan.stages]

    @classmethod
    def load(cls, folder: Path, device: torch.device, threads: int) -> StagedModel:
        """Load the plan in ``folder``'s ``stages.json``."""
        if not (folder / PLAN_FILE).is_file():
            raise ModelConfigError(
                f"no {PLAN_FILE} in {folder}: export the model again with this version of "
                "export_tools (repositories exported before the staged detector have none)"
            )
        plan = StagePlan.from_json((folder / PLAN_FILE).read_text(encoding="utf-8"))
        return cls(folder, plan, device, threads)

    def _load(self, folder: Path, stage: Stage, threads: int):
        path = folder / stage.file
        if stage.runtime == "torchscript":
            module = torch.jit.load(str(path), map_location=self.device).eval()
            return lambda tensors: _as_tuple(module(*tensors))
        returned = frozenset(stage.outputs) & frozenset(self.plan.outputs)
        return OpenVinoStage(path, threads, copy_outputs=bool(returned))

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the chain on one image; returns the plan's outputs, in order."""
        tensors = {self.plan.input: image}
        for stage, run in zip(self.plan.stages, self._runners, strict=True):
            outputs = run([tensors[name] for name in stage.inputs])
            if len(outputs) != len(stage.outputs):
                raise ModelConfigError(
                    f"stage {stage.name} gave {len(outputs)} outputs, "
                    f"its plan names {len(stage.outputs)}"
                )
            tensors.update(zip(stage.outputs, outputs, strict=True))
        return tuple(tensors[name] for name in self.plan.outputs)


class OpenVinoStage:
    """An OpenVINO IR compiled for the CPU at float32, called on torch tensors.

    Inputs and outputs are shared with OpenVINO, not copied (copying the backbone's features
    cost ~100 ms per image, see benchmarks/README.md).  A shared output is overwritten by the
    stage's next call, which is safe inside one :class:`StagedModel` call, where the next
    stages consume it; outputs the plan returns are copied (``copy_outputs``).
    """

    def __init__(self, path: Path, threads: int, copy_outputs: bool = False):
        """Compile ``path`` with ``threads`` inference threads and f32 precision pinned.

        OpenVINO picks bf16 by default on CPUs with AMX/AVX512-BF16; pinning f32 keeps the
        results within float rounding of Detectron2's own.  Thread pinning is off so that
        several instances (or torch's threads) never pile onto the same cores.
        """
        import openvino

        core = openvino.Core()
        self.compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY",
                "ENABLE_CPU_PINNING": False,
                "INFERENCE_NUM_THREADS": threads,
            },
        )
        self.request = self.compiled.create_infer_request()
        self.copy_outputs = copy_outputs

    def __call__(self, tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Infer once on CPU copies of ``tensors`` (no copy when they are on the CPU)."""
        arrays = [tensor.cpu().contiguous().numpy() for tensor in tensors]
        results = self.request.infer(arrays, share_inputs=True, share_outputs=True)
        outputs = [results[output] for output in self.compiled.outputs]
        if self.copy_outputs:
            outputs = [array.copy() for array in outputs]
        return tuple(torch.from_numpy(array) for array in outputs)


def _as_tuple(value) -> tuple[torch.Tensor, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)
