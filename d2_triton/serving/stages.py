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

A bit-exact export (``--exact``) is the same plan with one TorchScript stage.  The plan's
``precision`` (absent: ``f32``) is what its OpenVINO stages compute in: ``f32``; ``bf16``
where the CPU has native bf16 arithmetic (AMX or AVX512-BF16; elsewhere they run ``f32`` and
:attr:`StagedModel.precision` says so); or ``int8``, whose IR files the exporter quantized
(NNCF), their other operations at ``f32``.  This module needs torch, and openvino only when a
stage runs on it; not Detectron2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from d2_triton.errors import ModelConfigError
from d2_triton.names import Precision
from d2_triton.serving import torchscript

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
        precision: what the OpenVINO stages compute in.
    """

    input: str
    stages: tuple[Stage, ...]
    outputs: tuple[str, ...]
    precision: Precision = Precision.F32

    def __post_init__(self) -> None:
        """Every stage reads only tensors that exist by then; every output is produced."""
        object.__setattr__(self, "precision", Precision.parse(self.precision, ModelConfigError))
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
        document = {
            "input": self.input,
            "stages": stages,
            "outputs": list(self.outputs),
            "precision": self.precision.value,
        }
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
            precision = str(document.get("precision", Precision.F32.value))
            return cls(str(document["input"]), stages, tuple(document["outputs"]), precision)
        except (ValueError, KeyError, TypeError) as error:
            raise ModelConfigError(f"invalid {PLAN_FILE}: {error}") from None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the host's count)."""
    return len(os.sched_getaffinity(0))


def threads_per_instance(configured: int, instances: int) -> int:
    """Threads for one detector instance: ``configured``, or if 0 the cores, two instances a core.

    One or two instances get every core: two instances of half the threads each would double
    the latency of a request alone.  One is the export's default; a second
    (``--detector-instances 2``) once filled the gaps a single-threaded ROI pooling left.
    """
    if configured > 0:
        return configured
    cores = available_cores()
    return max(1, min(cores, 2 * cores // max(1, instances)))


class StagedModel:
    """A loaded plan, called like the single TorchScript module it replaces."""

    def __init__(
        self,
        folder: Path,
        plan: StagePlan,
        device: torch.device,
        threads: int,
        precision: Precision | None = None,
    ):
        """Load every stage of ``plan`` from ``folder``, using ``threads`` threads on CPU.

        Args:
            folder: the version folder holding the stage files.
            plan: the chain to load.
            device: torch's device for TorchScript stages; OpenVINO stages run on the CPU.
            threads: intra-op threads for torch and inference threads for OpenVINO.
            precision: overrides the plan's (the exporter checks its stages at ``f32``).

        Attributes:
            precision: what the OpenVINO stages compute in: the one asked for, or ``f32``
                where that is ``bf16`` and the CPU has no native bf16 arithmetic.
        """
        self.plan = plan
        self.device = device
        asked = Precision.parse(precision or plan.precision, ModelConfigError)
        uses_openvino = any(stage.runtime == "openvino" for stage in plan.stages)
        self.precision = runnable(asked) if uses_openvino else asked
        self._runners = [self._load(folder, stage, threads) for stage in plan.stages]

    @classmethod
    def load(
        cls,
        folder: Path,
        device: torch.device,
        threads: int,
        precision: Precision | None = None,
    ) -> StagedModel:
        """Load the plan in ``folder``'s ``stages.json`` (``precision``: see ``__init__``)."""
        if not (folder / PLAN_FILE).is_file():
            raise ModelConfigError(
                f"no {PLAN_FILE} in {folder}: export the model again with this version of "
                "export_tools (repositories exported before the staged detector have none)"
            )
        plan = StagePlan.from_json((folder / PLAN_FILE).read_text(encoding="utf-8"))
        return cls(folder, plan, device, threads, precision)

    def _load(self, folder: Path, stage: Stage, threads: int):
        path = folder / stage.file
        if stage.runtime == "torchscript":
            module = torchscript.load(path, self.device)
            return lambda tensors: _as_tuple(module(*tensors))
        returned = frozenset(stage.outputs) & frozenset(self.plan.outputs)
        return OpenVinoStage(path, threads, bool(returned), self.precision)

    def __call__(self, image: torch.Tensor, observe=None) -> tuple[torch.Tensor, ...]:
        """Run the chain on one image; returns the plan's outputs, in order.

        ``observe(stage, inputs)``, if given, sees each stage's input tensors before it runs
        (the exporter's int8 calibration records the OpenVINO stages' inputs so).
        """
        tensors = {self.plan.input: image}
        for stage, run in zip(self.plan.stages, self._runners, strict=True):
            inputs = [tensors[name] for name in stage.inputs]
            if observe is not None:
                observe(stage, inputs)
            outputs = run(inputs)
            if len(outputs) != len(stage.outputs):
                raise ModelConfigError(
                    f"stage {stage.name} gave {len(outputs)} outputs, "
                    f"its plan names {len(stage.outputs)}"
                )
            tensors.update(zip(stage.outputs, outputs, strict=True))
        return tuple(tensors[name] for name in self.plan.outputs)


def runnable(precision: Precision) -> Precision:
    """``precision`` if this CPU computes in it natively, else ``f32``.

    OpenVINO lists ``BF16`` among the CPU's optimization capabilities where it has AMX or
    AVX512-BF16; elsewhere it would emulate bf16, slower than f32.  int8 runs on any x86-64
    CPU (fastest with VNNI or AMX).
    """
    if precision.cpu_capability is None:
        return precision
    import openvino

    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return precision if precision.cpu_capability in capabilities else Precision.F32


class OpenVinoStage:
    """An OpenVINO IR compiled for the CPU at one precision, called on torch tensors.

    Inputs and outputs are shared with OpenVINO, not copied (copying the backbone's features
    cost ~100 ms per image, see benchmarks/README.md).  A shared output is overwritten by the
    stage's next call, which is safe inside one :class:`StagedModel` call, where the next
    stages consume it; outputs the plan returns are copied (``copy_outputs``).
    """

    def __init__(
        self,
        path: Path,
        threads: int,
        copy_outputs: bool = False,
        precision: Precision = Precision.F32,
    ):
        """Compile ``path`` with ``threads`` inference threads and ``precision`` pinned.

        OpenVINO picks bf16 by default on CPUs with AMX/AVX512-BF16; pinning f32 (the
        default) keeps the results within float rounding of Detectron2's own, and bf16 is
        asked for only by a plan that says so.  Thread pinning is off so that several
        instances (or torch's threads) never pile onto the same cores.
        """
        import openvino

        core = openvino.Core()
        self.compiled = core.compile_model(
            core.read_model(str(path)),
            "CPU",
            {
                # an int8 IR carries its quantization; the hint is for its float layers
                "INFERENCE_PRECISION_HINT": precision.float_arithmetic,
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
