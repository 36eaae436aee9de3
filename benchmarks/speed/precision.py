r"""Precisions side by side: Detectron2 eager, then the f32, bf16 and int8 exports served.

    .cache/venv-dev/bin/python -m benchmarks.speed.precision \
        --out benchmarks/results/cpu-2core-precision

The default benchmark model (Mask R-CNN R50-FPN, the exporter's fixed-seed weights where the
zoo cannot be reached) is exported once per ``--precisions`` entry, int8 calibrated on the
benchmark's own photos (speed does not depend on which images calibrate; accuracy is the
trained model's to show, ``benchmarks.accuracy.run``).  Then ``benchmarks.speed.run``
measures each in turn on the same photos and sizes: the first run also times
``DefaultPredictor``, the later ones take those figures (``--eager-json``), so every ratio
is against one eager measurement of this run.  Each run's own ``summary.json``
(``variant``, ``against_eager[size]``) goes to ``OUT/<precision>/``; ``OUT/summary.json``,
``report.md`` and ``plot.png`` compare them, with the CPU's model, class and the flags the
precisions depend on (``benchmarks.machine``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.speed import inputs, run
from benchmarks.speed.exports import default_repository, work_folder
from benchmarks.speed.inputs import by_width
from d2_triton.cache import CHECKOUT
from d2_triton.commands import Parser, command
from d2_triton.names import Precision

METRICS = ("throughput_ratio", "latency_ratio")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command's options."""
    parser = Parser(
        prog="python -m benchmarks.speed.precision",
        description=__doc__,
    )
    parser.add_argument("--out", type=Path, default=CHECKOUT / "benchmarks/results/latest")
    parser.add_argument("--precisions", default=",".join(p.value for p in Precision))
    parser.add_argument("--sizes", default="640x480,1280x960,1920x1080")
    parser.add_argument("--concurrency", default="1,2,3", help="ensemble sweep of each")
    parser.add_argument("--request-count", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="in-process repetitions")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the precisions OUT already has a summary of, measured on this code's "
        "exports (a run cut short); the rest take Detectron2's figures from the first "
        "precision's run",
    )
    return parser.parse_args(argv)


def export(precision: Precision, calibration: Path) -> Path:
    """The default model's repository in ``precision`` (cached like ``benchmarks.speed.run``'s)."""
    if precision is Precision.F32:
        return default_repository()
    options = ["--precision", precision.value]
    if precision.needs_calibration:
        options += ["--calibration", str(calibration)]
    return default_repository(*options)


def measured(summary: Path, repository: Path) -> dict | None:
    """A run's summary if it measured ``repository`` (this code's export), else ``None``.

    An earlier run's summary in the same folder (older code, another export) is measured again.
    """
    if not summary.is_file():
        return None
    kept = json.loads(summary.read_text())
    words = shlex.split(kept["command"])
    named = words[words.index("--repository") + 1] if "--repository" in words else None
    return kept if named == str(repository) else None


def runs_in(precision: str) -> str:
    """What the served detector computes in on this CPU (a bf16 export may run f32)."""
    from d2_triton.serving.stages import runnable

    return runnable(Precision.parse(precision)).value


def compare(summaries: dict[str, dict]) -> dict:
    """Each precision against eager and against the f32 export, per size; memory at rest."""
    f32 = summaries.get(Precision.F32.value, {}).get("against_eager", {})
    compared = {}
    for precision, summary in summaries.items():
        sizes = summary["against_eager"]
        compared[precision] = {
            "runs_in": runs_in(precision),
            "against_eager": sizes,
            "against_f32": {
                size: {
                    "throughput_ratio": figures["ensemble_img_per_s"]
                    / f32[size]["ensemble_img_per_s"],
                    "latency_ratio": f32[size]["ensemble_p50_ms_alone"]
                    / figures["ensemble_p50_ms_alone"],
                }
                for size, figures in sizes.items()
                if size in f32
            },
            "memory_rest_mib": summary["memory"]["rest_total"] / 2**20,  # sampled in bytes
            "detector_stages_ms": {
                size: figures["model"].get("stages_ms", {})
                for size, figures in summary["components"]["sizes"].items()
            },
        }
    return compared


def report(summary: dict) -> str:
    """report.md: one table per ratio, rows by precision, columns by size."""
    variants = summary["precisions"]
    sizes = by_width(next(iter(variants.values()))["against_eager"])
    lines = [
        "# Precisions: Detectron2 eager against the served f32, bf16 and int8 exports",
        "",
        f"- when: {summary['when']}; machine: {summary['machine']}",
        "- CPU flags: "
        + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in summary["cpu_flags"].items()),
        f"- model: {summary['model']}",
        f"- command: `{summary['command']}`",
        "",
    ]
    lines += [*ratio_table(variants, sizes, "throughput"), ""]
    lines += ratio_table(variants, sizes, "latency")
    lines += ["", "Where the bare detector's time goes (ms per image, in-process, largest size):"]
    return "\n".join([*lines, "", *stages_table(variants, sizes[-1])]) + "\n"


# What each ratio table shows: its unit, the keys of ``against_eager`` it reads, its digits.
RATIO_TABLES = {
    "throughput": ("img/s", "eager_img_per_s", "ensemble_img_per_s", "throughput_ratio", ".3f"),
    "latency": ("ms alone", "eager_ms_per_image", "ensemble_p50_ms_alone", "latency_ratio", ".0f"),
}


def ratio_table(variants: dict, sizes: list[str], kind: str) -> list[str]:
    """Detectron2's figure at each size, then each precision's and its ratio to it.

    ``throughput``: images a second at the best concurrency, with where each precision runs;
    ``latency``: one image alone, with each precision's memory at rest.
    """
    unit, eager_key, served_key, ratio_key, digits = RATIO_TABLES[kind]
    latency = kind == "latency"
    eager = next(iter(variants.values()))["against_eager"]
    header = ["precision" if latency else "precision (runs in)"]
    header += [f"{s} {unit} (x eager)" for s in sizes] + (["MiB at rest"] if latency else [])
    rows = [["Detectron2 eager", *(format(eager[s][eager_key], digits) for s in sizes)]]
    rows[0] += [""] if latency else []
    for name, figures in variants.items():
        against = figures["against_eager"]
        row = [name if latency else f"{name} ({figures['runs_in']})"]
        row += [
            f"{format(against[s][served_key], digits)} (**{against[s][ratio_key]:.2f}**)"
            for s in sizes
        ]
        rows.append(row + ([f"{figures['memory_rest_mib']:.0f}"] if latency else []))
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def stages_table(variants: dict, size: str) -> list[str]:
    """The bare detector's stages in milliseconds at ``size``, by precision."""
    stage_names = list(next(iter(variants.values()))["detector_stages_ms"][size])
    lines = [
        "| precision | " + " | ".join(stage_names) + " |",
        "|---" * (len(stage_names) + 1) + "|",
    ]
    for name, figures in variants.items():
        stages = figures["detector_stages_ms"][size]
        lines.append(
            f"| {name} | " + " | ".join(f"{stages.get(n, 0):.0f}" for n in stage_names) + " |"
        )
    return lines


def plot(summary: dict, path: Path) -> None:
    """Throughput and latency ratios against eager, per size, one bar per precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    variants = summary["precisions"]
    sizes = by_width(next(iter(variants.values()))["against_eager"])
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(variants)
    for axis, metric in zip(axes, METRICS, strict=True):
        for offset, (name, figures) in enumerate(variants.items()):
            values = [figures["against_eager"][s][metric] for s in sizes]
            axis.bar(np.arange(len(sizes)) + offset * width, values, width, label=name)
        axis.axhline(1.0, color="grey", linewidth=0.8)
        axis.set_xticks(np.arange(len(sizes)) + width * (len(variants) - 1) / 2, sizes)
        axis.set(ylabel=f"{metric.replace('_', ' ')} (x DefaultPredictor)", title=metric)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@command("python -m benchmarks.speed.precision")
def main(argv: list[str] | None = None) -> int:
    """Export each precision, measure each with ``run``, then write the comparison."""
    args = parse_args(argv)
    out = args.out.absolute()
    precisions = [Precision.parse(p).value for p in args.precisions.split(",") if p]
    # named by the sizes: the export cache knows the folder by name, not by content
    calibration = work_folder(f"calibration-{args.sizes.replace(',', '-')}")
    inputs.write_photos(calibration, [inputs.parse_size(s) for s in args.sizes.split(",")])
    repositories = {p: export(Precision(p), calibration) for p in precisions}
    summaries = {}
    for precision, repository in repositories.items():
        eager_json = work_folder(precisions[0]) / "eager.json" if summaries else None
        done = out / precision / "summary.json"
        kept = measured(done, repository) if args.resume else None
        if kept is not None:
            print(f"== {precision}: kept from {done}", flush=True)
            summaries[precision] = kept
            continue
        print(f"== {precision}: {repository}", flush=True)
        options = [
            "--repository", str(repository),
            "--variant", precision,
            "--out", str(out / precision),
            "--sizes", args.sizes,
            "--concurrency", args.concurrency,
            "--composing-concurrency", "",
            "--request-count", str(args.request_count),
            "--repeats", str(args.repeats),
        ]  # fmt: skip
        if eager_json is not None:
            options += ["--eager-json", str(eager_json)]
        if run.main(options) != 0:
            raise SystemExit(f"benchmarks.speed.run failed for {precision}")
        summaries[precision] = json.loads(done.read_text())
    first = next(iter(summaries.values()))
    summary = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine.description(),
        "cpu_flags": machine.cpu_flags(),
        "cpu_class": machine.cpu_class(),
        "command": "python -m benchmarks.speed.precision "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "model": {k: first["model"][k] for k in ("config", "weights", "score_thresh_test")},
        "precisions": compare(summaries),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "report.md").write_text(report(summary))
    plot(summary, out / "plot.png")
    print(f"wrote {out / 'report.md'}, summary.json, plot.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
