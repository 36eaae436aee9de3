"""Accuracy of the trained shapes model: Detectron2 itself against the served ensemble.

    .cache/venv-dev/bin/python -m benchmarks.accuracy.run --out benchmarks/results/accuracy

Trains the model if the cache has none (``training.train``), exports it with the real export
CLI once per variant (``default``: no options; ``exact``: ``--exact``), each as the pipeline
of its name in one repository, and scores COCO bbox and segm AP on the val split with
pycocotools for (a) Detectron2's ``DefaultPredictor`` on each file and (b) each variant's
pipeline served over HTTP by one tritonserver, its RLE masks as they come.  All go through
the same scoring code.  Writes ``summary.json``, ``report.md`` and ``plot.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks import machine
from benchmarks.accuracy.models import (
    DATA,
    EXPORTS,
    TRAINING,
    VARIANTS,
    export_variants,
    trained_model,
)
from benchmarks.accuracy.scoring import METRICS, detectron2_detections, score, served_figures
from d2_triton.cache import CHECKOUT
from d2_triton.commands import Parser, command
from training import shapes, train


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
        f"Machine: {summary['machine']['cpu']}, {summary['machine']['cores']} cores, class "
        f"{summary['machine']['class']} ({', '.join(summary['machine']['flags'])}).",
        "",
        "| | " + " | ".join(METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for name, figures in rows:
        lines.append(f"| {name} | " + " | ".join(f"{figures[m]:.2f}" for m in METRICS) + " |")
    shown = out.relative_to(CHECKOUT) if out.is_relative_to(CHECKOUT) else out
    lines += ["", f"Command: `.cache/venv-dev/bin/python -m benchmarks.accuracy.run --out {shown}`"]
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
        "machine": machine.record(),  # where it was scored (and trained, unless cached)
        "train_seconds": info["train_seconds"],
        "detectron2": score(val.json_file, detectron2_detections(model, images, val.image_root)),
    }
    repository = export_variants(model, variants, EXPORTS)
    log = out / "tritonserver.log"
    summary["served"] = served_figures(repository, variants, images, val, log)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_report(summary, out)
    return summary


@command("python -m benchmarks.accuracy.run")
def main(argv: list[str] | None = None) -> int:
    """Measure and print the summary."""
    parser = Parser(
        prog="python -m benchmarks.accuracy.run",
        description=__doc__,
    )
    parser.add_argument("--out", type=Path, default=CHECKOUT / "benchmarks/results/accuracy")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.out.absolute()), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
