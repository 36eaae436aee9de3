"""In-process baselines, run in the *server* environment (torch + d2_triton, no Triton).

* the bare exported model on already-preprocessed images, with the detector config's
  thread setting and device (a KIND_GPU detector runs on cuda:0; the copies to and from it
  are timed, as the ensemble pays them too): the speed the ensemble is judged against; on
  the CPU also each of its stages (OpenVINO parts and TorchScript glue) in the same calls;
* preprocess alone and postprocess alone (``d2_triton.serving.steps``, the code the models run),
  wall and CPU time.

It also writes perf_analyzer input files for each composing model, built from the real
intermediate tensors of the same photos.

    python -m benchmarks.speed.components --repository R --photos DIR --out DIR --repeats 3
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torchvision  # noqa: F401  (registers the ops the traced graph calls)
from tritonclient.grpc.model_config_pb2 import ModelInstanceGroup

from benchmarks.speed.inputs import write_input_data
from d2_triton.carried import CARRIED
from d2_triton.commands import Parser, command
from d2_triton.model_config import DetectorParameters, PostprocessParameters, PreprocessParameters
from d2_triton.names import (
    DETECTOR_MODEL,
    DETECTOR_OUTPUTS,
    IMAGE,
    ORIGINAL_SIZE,
    POSTPROCESS_MODEL,
    PREPROCESS_MODEL,
    RESIZED_SIZE,
)
from d2_triton.serving import allocator, steps
from d2_triton.serving.options import PostprocessOptions
from d2_triton.serving.stages import StagedModel, threads_per_instance
from d2_triton.vision.detections import Detections
from d2_triton.vision.labels import LabelMap
from export_tools.repository.configs import parameters_of, parse_pbtxt, read_parameters


class Repository:
    """The settings the three models read from their configs, read by the same function."""

    def __init__(self, path: Path):
        def config_file(model: str) -> Path:
            return path / model / "config.pbtxt"

        self.preprocess = read_parameters(PreprocessParameters, config_file(PREPROCESS_MODEL))
        detector_config = parse_pbtxt(config_file(DETECTOR_MODEL).read_text())
        detector = parameters_of(DetectorParameters, detector_config)
        post = read_parameters(PostprocessParameters, config_file(POSTPROCESS_MODEL))
        instances = sum(group.count for group in detector_config.instance_group)
        self.threads = threads_per_instance(detector.intra_op_threads, instances)
        kind = detector_config.instance_group[0].kind
        on_gpu = kind == ModelInstanceGroup.KIND_GPU and torch.cuda.is_available()
        self.device = torch.device("cuda", 0) if on_gpu else torch.device("cpu")
        self.fields = list(detector.output_fields)
        self.detector_folder = path / DETECTOR_MODEL / "1"
        self.labels = LabelMap.from_file(path / POSTPROCESS_MODEL / post.label_map)
        self.options = PostprocessOptions(
            score_threshold=post.default_score_threshold, mask_format=post.default_mask_format
        )


def run_model(model, image: torch.Tensor, device: torch.device, observe=None) -> list[torch.Tensor]:
    """One detector call as the Triton model makes it: in to the device, out to the CPU."""
    with torch.inference_mode():
        outputs = model(image.to(device), observe=observe)
    return [tensor.cpu() for tensor in outputs]  # waits for the device to finish


class StageClock:
    """Wall time of each stage of the detector calls it watches.

    ``StagedModel``'s observe hook marks each stage's start; the next mark, or the call's
    end, its stop.  CPU only: on a GPU the marks would time kernel launches, not kernels.
    """

    def __init__(self):
        self.seconds: dict[str, list[float]] = {}
        self._marks: list[tuple[str, float]] = []

    def observe(self, stage, inputs) -> None:
        """Mark a stage's start (``StagedModel``'s observe hook)."""
        self._marks.append((stage.name, time.perf_counter()))

    def call_ended(self) -> None:
        """Close the current call: each mark lasts until the next one."""
        ends = [started for _, started in self._marks[1:]] + [time.perf_counter()]
        for (name, started), ended in zip(self._marks, ends, strict=True):
            self.seconds.setdefault(name, []).append(ended - started)
        self._marks = []

    def mean_ms(self) -> dict[str, float]:
        """Each stage's mean time, in milliseconds."""
        return {name: 1000 * statistics.mean(times) for name, times in self.seconds.items()}


def timed(function, *args):
    """``function(*args)``, its wall seconds and its CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def raw_detections(fields: list[str], outputs) -> Detections:
    """The detector's outputs, named by ``fields``, as postprocess takes them."""
    named = {field: tensor.numpy() for field, tensor in zip(fields, outputs, strict=True)}
    masks = named.get("pred_masks")
    return Detections(
        boxes=named["pred_boxes"],
        scores=named["scores"],
        classes=named["pred_classes"],
        mask_probs=None if masks is None else masks[:, 0],
        carried={kind.name: named[kind.field] for kind in CARRIED if kind.field in named},
    )


def postprocess_inputs(model_input: steps.ModelInput, fields, outputs) -> dict[str, np.ndarray]:
    """The postprocess request these detector outputs make (perf_analyzer's input)."""
    tensors = {
        DETECTOR_OUTPUTS[field]: tensor.numpy()
        for field, tensor in zip(fields, outputs, strict=True)
        if field in DETECTOR_OUTPUTS
    }
    tensors[ORIGINAL_SIZE] = np.array(model_input.original_hw, np.int32)
    tensors[RESIZED_SIZE] = np.array(model_input.resized_hw, np.int32)
    return tensors


def measure_size(repo: Repository, model, photos: list[Path], repeats: int, out: Path) -> dict:
    """Times per stage for one image size; writes that size's perf_analyzer inputs."""
    stages = {name: {"wall": [], "cpu": []} for name in ("preprocess", "model", "postprocess")}
    detections = []
    detector_requests, postprocess_requests = [], []
    clock = StageClock() if repo.device.type == "cpu" else None
    for photo in photos:
        payload = photo.read_bytes()
        model_input = steps.preprocess(payload, repo.preprocess)
        image = torch.from_numpy(model_input.image)
        for _ in range(2):  # each new shape: the TorchScript executor profiles, then optimises
            run_model(model, image, repo.device)
        for _ in range(repeats):
            model_input, wall, cpu = timed(steps.preprocess, payload, repo.preprocess)
            stages["preprocess"]["wall"].append(wall)
            stages["preprocess"]["cpu"].append(cpu)
            observe = clock.observe if clock else None
            outputs, wall, cpu = timed(run_model, model, image, repo.device, observe)
            if clock:
                clock.call_ended()
            stages["model"]["wall"].append(wall)
            stages["model"]["cpu"].append(cpu)
            raw = raw_detections(repo.fields, outputs)
            result, wall, cpu = timed(
                steps.postprocess,
                raw,
                model_input.resized_hw,
                model_input.original_hw,
                repo.options,
                repo.labels,
            )
            stages["postprocess"]["wall"].append(wall)
            stages["postprocess"]["cpu"].append(cpu)
        detections.append(len(result["scores"]))
        detector_requests.append({IMAGE: model_input.image})
        tensors = postprocess_inputs(model_input, repo.fields, outputs)
        if all(array.size for array in tensors.values()):  # perf_analyzer 2.51 crashes on
            postprocess_requests.append(tensors)  # zero-element tensors (no detections)
    out.mkdir(parents=True, exist_ok=True)
    write_input_data(out / "detector.json", detector_requests)
    write_input_data(out / "postprocess.json", postprocess_requests)
    summary = {
        stage: {
            "wall_ms": 1000 * statistics.mean(times["wall"]),
            "cpu_ms": 1000 * statistics.mean(times["cpu"]),
        }
        for stage, times in stages.items()
    }
    summary["model"]["throughput"] = 1.0 / statistics.mean(stages["model"]["wall"])
    if clock:
        summary["model"]["stages_ms"] = clock.mean_ms()
    summary["detections_per_image"] = statistics.mean(detections)
    summary["resized_hw"] = list(model_input.resized_hw)
    return summary


@command("python -m benchmarks.speed.components")
def main(argv: list[str] | None = None) -> int:
    """Time the bare model, preprocess and postprocess; write components.json."""
    parser = Parser(
        prog="python -m benchmarks.speed.components", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True, help="one folder per size")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    repo = Repository(args.repository)
    allocator.keep_freed_memory()  # as the detector's stub does
    torch.set_num_threads(repo.threads)
    model = StagedModel.load(repo.detector_folder, repo.device, repo.threads)
    results = {"threads": torch.get_num_threads(), "device": str(repo.device), "sizes": {}}
    for folder in sorted(p for p in args.photos.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        results["sizes"][folder.name] = measure_size(
            repo, model, photos, args.repeats, args.out / folder.name
        )
        print(f"{folder.name}: {json.dumps(results['sizes'][folder.name])}", flush=True)
    (args.out / "components.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
