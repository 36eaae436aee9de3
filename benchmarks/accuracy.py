"""Accuracy of the trained shapes model: Detectron2 itself against the served ensemble.

    .cache/venv-dev/bin/python -m benchmarks.accuracy --out benchmarks/results/accuracy

Trains the model if the cache has none (``training.train``), exports it with the real export
CLI once per variant (``default``: no options; ``exact``: ``--exact``), each as the pipeline
of its name in one repository, and scores COCO bbox and segm AP on the val split with
pycocotools for (a) Detectron2's ``DefaultPredictor`` on each file and (b) each variant's
pipeline served over HTTP by one tritonserver, its RLE masks as they come.  All go through
the same scoring code.  Writes ``summary.json``, ``report.md`` and ``plot.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from d2_triton.cache import cache_dir
from d2_triton.client import DetectionClient
from d2_triton.commands import Parser, command
from d2_triton.server import ServerEnvironment, TritonServer
from d2_triton.testing.fingerprint import export_fingerprint
from d2_triton.testing.ports import loopback_server_settings
from export_tools.progress import progress
from training import shapes, train

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = cache_dir()
TRAINED = CACHE / "trained" / "shapes"
EXPORTS = CACHE / "accuracy-exports"
DATA = train.default_data_dir(TRAINED)
METRICS = ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50")
# How the measured model is trained: on one thread, so that the test suite can train it in
# the background beside its other tests (tests/helpers/training.py).  Two threads that
# share two cores with the suite stall at every parallel region (each waits for the other,
# which the scheduler gave to a test): 7 s an iteration instead of 1.1 s on one thread.
# A model trained on torch's default threads (docs/your-own-model.md's command) has the same
# key and is used as it is.
TRAINING = train.TrainingSpec(threads=1)
# The test suite's model (tests/integration/test_accuracy.py, test_page.py): the same model,
# data and schedule shape, 600 iterations instead of 1500, which is 40 % of the training.
# What the suite checks is that the served variants score as Detectron2 does and that the
# model learned (AP50 ~54 against ~93: on an Intel Xeon with AMX, default and exact exports
# equal to the digit, bf16 within 0.22 AP, int8 within 0.12), not how well it learned;
# TRAINING's model, measured by this benchmark, is what the docs quote.
SUITE_TRAINING = train.TrainingSpec(max_iter=600, threads=1)


def model_folder(spec: train.TrainingSpec) -> Path:
    """Where ``spec``'s model is kept: TRAINED for TRAINING's, a folder of its own else."""
    if dataclasses.replace(spec, threads=TRAINING.threads) == TRAINING:
        return TRAINED  # the thread count is not part of the model (train.TrainingSpec)
    name = f"shapes-{spec.max_iter}it-{spec.images_per_batch}img-lr{spec.base_lr}-seed{spec.seed}"
    return TRAINED.with_name(name)


def shown(path: Path) -> str:
    """``path`` relative to the checkout when inside it (the exports run there), else whole."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


# Export options of each variant; "default" is what a fresh export gives; int8 calibrates on
# the train split (scored, like every variant, on val).
VARIANTS = {
    "default": (),
    "exact": ("--exact",),
    "bf16": ("--precision", "bf16"),
    "int8": (
        "--precision",
        "int8",
        "--calibration",
        shown(shapes.splits(DATA)["train"].image_root),
    ),
}


def trained_model(spec: train.TrainingSpec = TRAINING) -> Path:
    """The trained model's folder (config.yaml, model_final.pth), training it if needed."""
    from export_tools.detectron2_setup.shims import import_detectron2

    import_detectron2()
    return train.train(model_folder(spec), DATA, spec)


def variants_repository(model: Path, variants: dict[str, tuple[str, ...]], work: Path) -> Path:
    """Where :func:`export_variants` keeps the repository of these variants."""
    key = json.loads((model / train.INFO_FILE).read_text())["key"]
    described = [f"{name}={' '.join(options)}" for name, options in variants.items()]
    return work / f"variants-{key}-{export_fingerprint(*described)}"


def export_command(model: Path, repository: Path, *options: str) -> list[str]:
    """The export command line for the trained model, into ``repository``."""
    return [
        sys.executable,
        "-m",
        "export_tools.export",
        "--config",
        str(model / train.CONFIG_FILE),
        "--weights",
        str(model / train.CHECKPOINT_FILE),
        "--repository",
        str(repository),
        *options,
    ]


def export_variants(model: Path, variants: dict[str, tuple[str, ...]], work: Path) -> Path:
    """Each variant exported by the real CLI as the pipeline of its name, all in one
    repository (one server answers for all); cached by training and export."""
    repository = variants_repository(model, variants, work)
    if repository.is_dir():
        return repository
    partial = repository.with_name(repository.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    val = shapes.splits(DATA)["val"]
    dataset = ("--coco-dataset", val.name, str(val.json_file), str(val.image_root))
    for name, options in variants.items():
        command = export_command(model, partial, "--name", name, *dataset, *options)
        subprocess.run(command, cwd=REPO_ROOT, check=True)
    partial.rename(repository)  # only a repository with every variant goes by the final name
    return repository


def coco_detection(image_id: int, category_id: int, box, score: float, rle: dict) -> dict:
    """One detection in COCO's results format (box as x, y, width, height)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "score": float(score),
        "segmentation": rle,
    }


def detectron2_detections(model: Path, images: list[dict], image_root: Path) -> list[dict]:
    """DefaultPredictor on each val file, as a Detectron2 user runs it."""
    from detectron2.config import get_cfg
    from detectron2.data.detection_utils import read_image
    from detectron2.engine import DefaultPredictor
    from pycocotools import mask as mask_util

    cfg = get_cfg()
    cfg.merge_from_file(str(model / train.CONFIG_FILE))
    cfg.MODEL.WEIGHTS = str(model / train.CHECKPOINT_FILE)
    predictor = DefaultPredictor(cfg)
    detections = []
    for image in progress(images, "Detectron2 on val"):
        instances = predictor(read_image(str(image_root / image["file_name"]), format="BGR"))
        instances = instances["instances"].to("cpu")
        masks = instances.pred_masks.numpy().astype(np.uint8)
        for index in range(len(instances)):
            rle = mask_util.encode(np.asfortranarray(masks[index]))
            rle["counts"] = rle["counts"].decode("ascii")
            detections.append(
                coco_detection(
                    image["id"],
                    int(instances.pred_classes[index]) + 1,
                    instances.pred_boxes.tensor[index].tolist(),
                    instances.scores[index],
                    rle,
                )
            )
    return detections


def served_detections(
    http_url: str, pipeline: str, images: list[dict], image_root: Path
) -> list[dict]:
    """The served pipeline's answer for each val file's bytes, over HTTP."""
    detections = []
    with DetectionClient(http_url, model=pipeline) as client:
        for image in progress(images, f"served {pipeline} on val"):
            result = client.detect((image_root / image["file_name"]).read_bytes())
            height, width = result.image_size
            for index in range(len(result)):
                rle = {"size": [height, width], "counts": result.masks_rle[index].decode("ascii")}
                detections.append(
                    coco_detection(
                        image["id"],
                        int(result.classes[index]) + 1,
                        result.boxes[index],
                        result.scores[index],
                        rle,
                    )
                )
    return detections


def score(ground_truth: Path, detections: list[dict]) -> dict[str, float]:
    """COCO bbox and segm AP and AP50, on the 0-100 scale."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(ground_truth))
        found = truth.loadRes(detections) if detections else None
        figures = {}
        for kind in ("bbox", "segm"):
            if found is None:
                figures |= {f"{kind}_AP": 0.0, f"{kind}_AP50": 0.0}
                continue
            evaluation = COCOeval(truth, found, kind)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            figures[f"{kind}_AP"] = 100 * float(evaluation.stats[0])
            figures[f"{kind}_AP50"] = 100 * float(evaluation.stats[1])
    return figures


def served_figures(
    repository: Path,
    variants: dict[str, tuple[str, ...]],
    images: list[dict],
    val: shapes.DatasetFiles,
    log: Path,
) -> dict[str, dict]:
    """Serve ``repository`` with the real tritonserver and score each variant's pipeline."""
    server_settings = loopback_server_settings(repository)
    environment = ServerEnvironment.inspect(CACHE / "venv")
    figures = {}
    with TritonServer(server_settings, environment, log_path=log) as server:
        for name, export_options in variants.items():
            detections = served_detections(server.http_url, name, images, val.image_root)
            figures[name] = {
                **score(val.json_file, detections),
                "export_options": list(export_options),
            }
    return figures


def write_report(summary: dict, out: Path) -> None:
    """report.md and plot.png beside summary.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("Detectron2 DefaultPredictor", summary["detectron2"])] + [
        (f"served ({name})", figures) for name, figures in summary["served"].items()
    ]
    lines = [
        "# Accuracy: the trained shapes model, Detectron2 against the served ensemble",
        "",
        f"Model: {summary['model']}; weights: {summary['weights']}; trained in "
        f"{summary['train_seconds']:.0f} s on the CPU; {summary['val_images']} val images.",
        "",
        "| | " + " | ".join(METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for name, figures in rows:
        lines.append(f"| {name} | " + " | ".join(f"{figures[m]:.2f}" for m in METRICS) + " |")
    shown = out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out
    lines += ["", f"Command: `.cache/venv-dev/bin/python -m benchmarks.accuracy --out {shown}`"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(rows)
    for offset, (name, figures) in enumerate(rows):
        positions = np.arange(len(METRICS)) + offset * width
        axis.bar(positions, [figures[m] for m in METRICS], width, label=name)
    axis.set_xticks(np.arange(len(METRICS)) + width * (len(rows) - 1) / 2, METRICS)
    axis.set(ylim=(0, 100), ylabel="AP (0-100)", title="COCO AP on the shapes val split")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "plot.png", dpi=110)
    plt.close(figure)


def measure(
    out: Path,
    variants: dict[str, tuple[str, ...]] = VARIANTS,
    spec: train.TrainingSpec = TRAINING,
) -> dict:
    """Train if needed, export, score Detectron2 and every served variant; write the report."""
    model = trained_model(spec)
    info = json.loads((model / train.INFO_FILE).read_text())
    val = shapes.splits(DATA)["val"]
    images = json.loads(val.json_file.read_text())["images"]
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "model": f"Mask R-CNN R18-FPN (GroupNorm, from scratch; {train.BASE_CONFIG} made small)",
        "weights": (
            f"trained here on the shapes dataset, {info['iterations']} iterations "
            f"on {info['torch_threads']} CPU thread(s)"
        ),
        "val_images": len(images),
        "train_seconds": info["train_seconds"],
        "detectron2": score(val.json_file, detectron2_detections(model, images, val.image_root)),
    }
    repository = export_variants(model, variants, EXPORTS)
    log = out / "tritonserver.log"
    summary["served"] = served_figures(repository, variants, images, val, log)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_report(summary, out)
    return summary


@command("python -m benchmarks.accuracy")
def main(argv: list[str] | None = None) -> int:
    """Measure and print the summary."""
    parser = Parser(
        prog="python -m benchmarks.accuracy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks/results/accuracy")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.out.absolute()), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
