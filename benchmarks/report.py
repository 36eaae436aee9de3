"""Turn one benchmark run's measurements into results.csv, report.md and a PNG plot."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from benchmarks.perf import PerfRow
from d2_triton.commands import Parser, command

MIB = 1024 * 1024


def write_csv(rows: list[PerfRow], path: Path) -> None:
    fields = [f.name for f in dataclasses.fields(PerfRow) if f.name != "server_breakdown"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: getattr(row, name) for name in fields})


def plot(rows: list[PerfRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ensemble = [row for row in rows if row.model == "ensemble"]
    sizes = sorted({row.size for row in ensemble}, key=lambda s: int(s.split("x")[0]))
    figure, (throughput_axis, latency_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for size in sizes:
        points = sorted((r for r in ensemble if r.size == size), key=lambda r: r.concurrency)
        levels = [r.concurrency for r in points]
        line = throughput_axis.plot(levels, [r.throughput for r in points], "o-", label=size)[0]
        colour = line.get_color()
        for attribute, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
            latency_axis.plot(
                levels,
                [getattr(r, attribute) / 1000 for r in points],
                style,
                color=colour,
                marker="o",
                label=f"{size} {attribute[:3]}",
            )
    throughput_axis.set(xlabel="concurrency", ylabel="images / s", title="ensemble throughput")
    latency_axis.set(
        xlabel="concurrency", ylabel="latency (s)", title="ensemble latency p50/p95/p99"
    )
    throughput_axis.legend()
    latency_axis.legend(fontsize=7, ncol=len(sizes))
    for axis in (throughput_axis, latency_axis):
        axis.grid(alpha=0.3)
        axis.set_xticks(sorted({r.concurrency for r in ensemble}))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _table(header: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        if not isinstance(value, float):
            return str(value)
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def best(rows: list[PerfRow], model: str, size: str) -> PerfRow:
    return max((r for r in rows if r.model == model and r.size == size), key=lambda r: r.throughput)


def against_eager(summary: dict, rows: list[PerfRow]) -> dict[str, dict[str, float]]:
    """Per size: the ensemble against Detectron2's DefaultPredictor measured in the same run.

    ``throughput_ratio``: the ensemble's img/s at its best concurrency over the eager loop's;
    ``latency_ratio``: the eager loop's time per image over the ensemble's p50 for one
    request alone (concurrency 1).  Empty when the run skipped the eager loop.
    """
    eager = (summary.get("eager") or {}).get("sizes", {})
    ratios = {}
    for size, figures in eager.items():
        top = best(rows, "ensemble", size)
        alone = [r for r in rows if r.model == "ensemble" and r.size == size and r.concurrency == 1]
        ratios[size] = {
            "eager_img_per_s": figures["throughput"],
            "ensemble_img_per_s": top.throughput,
            "throughput_ratio": top.throughput / figures["throughput"],
            "eager_ms_per_image": figures["wall_ms"],
            "ensemble_p50_ms_alone": alone[0].p50_ms if alone else float("nan"),
            "latency_ratio": figures["wall_ms"] / alone[0].p50_ms if alone else float("nan"),
        }
    return ratios


def markdown(summary: dict, rows: list[PerfRow]) -> str:
    components = summary["components"]["sizes"]
    eager = (summary.get("eager") or {}).get("sizes", {})
    sizes = sorted(components, key=lambda s: int(s.split("x")[0]))
    parts = [
        f"# Benchmark: {summary['variant']}",
        "",
        f"- when: {summary['when']}; machine: {summary['machine']}",
        f"- model: `{summary['model']['config']}`, weights: {summary['model']['weights']}, "
        f"score_thresh_test {summary['model']['score_thresh_test']}",
        f"- settings: {summary['settings']}",
        f"- command: `{summary['command']}`",
        "",
        "## Ensemble vs the bare model (same run)",
        "",
        "Bare model: the exported detector called in-process on already-preprocessed images, "
        f"{summary['components']['threads']} threads. Ensemble: perf_analyzer over "
        "HTTP, raw JPEG bytes in, labelled detections with RLE masks out, best concurrency. "
        "Detectron2 eager: `DefaultPredictor` in a loop (read_image, resize, model, "
        "detector_postprocess with pasted masks).",
        "",
    ]
    table = []
    for size in sizes:
        top = best(rows, "ensemble", size)
        bare = components[size]["model"]["throughput"]
        row = [
            size,
            components[size]["detections_per_image"],
            bare,
            top.throughput,
            top.concurrency,
            top.throughput / bare,
        ]
        if size in eager:
            row += [eager[size]["throughput"], top.throughput / eager[size]["throughput"]]
        else:
            row += ["-", "-"]
        table.append(row)
    parts.append(
        _table(
            [
                "size",
                "detections/img",
                "bare model img/s",
                "ensemble img/s",
                "at concurrency",
                "ensemble / bare",
                "Detectron2 eager img/s",
                "ensemble / eager",
            ],
            table,
        )
    )
    ratios = against_eager(summary, rows)
    if ratios:
        parts += ["", "## Against Detectron2's DefaultPredictor (same run, same photos)", ""]
        parts.append(
            _table(
                [
                    "size",
                    "eager img/s",
                    "ensemble img/s (best)",
                    "**throughput ratio**",
                    "eager ms/img",
                    "ensemble p50 ms, alone",
                    "**latency ratio**",
                ],
                [
                    [
                        size,
                        r["eager_img_per_s"],
                        r["ensemble_img_per_s"],
                        r["throughput_ratio"],
                        r["eager_ms_per_image"],
                        r["ensemble_p50_ms_alone"],
                        r["latency_ratio"],
                    ]
                    for size, r in sorted(
                        ratios.items(), key=lambda item: int(item[0].split("x")[0])
                    )
                ],
            )
        )
    parts += ["", "## Where the time goes (in-process, per image)", ""]
    share_rows = []
    for size in sizes:
        stage = components[size]
        pre, model, post = stage["preprocess"], stage["model"], stage["postprocess"]
        share_rows.append(
            [
                size,
                pre["wall_ms"],
                pre["cpu_ms"],
                post["wall_ms"],
                post["cpu_ms"],
                model["wall_ms"],
                model["cpu_ms"],
                100 * (pre["cpu_ms"] + post["cpu_ms"]) / model["cpu_ms"],
                100 * (pre["wall_ms"] + post["wall_ms"]) / model["wall_ms"],
            ]
        )
    parts.append(
        _table(
            [
                "size",
                "pre wall ms",
                "pre CPU ms",
                "post wall ms",
                "post CPU ms",
                "model wall ms",
                "model CPU ms",
                "pre+post CPU % of model CPU",
                "pre+post wall % of model wall",
            ],
            share_rows,
        )
    )
    parts += ["", "## Ensemble sweep (perf_analyzer)", ""]
    parts.append(
        _table(
            ["size", "concurrency", "img/s", "p50 ms", "p95 ms", "p99 ms", "avg ms"],
            [
                [r.size, r.concurrency, r.throughput, r.p50_ms, r.p95_ms, r.p99_ms, r.avg_ms]
                for r in rows
                if r.model == "ensemble"
            ],
        )
    )
    parts += ["", "Server-side time per request and composing model (Triton statistics, ms):", ""]
    breakdown_rows = []
    for r in rows:
        if r.model != "ensemble":
            continue
        for name in ("preprocess", "detector", "postprocess"):
            stats = r.server_breakdown.get(name)
            if stats:
                breakdown_rows.append(
                    [
                        r.size,
                        r.concurrency,
                        name,
                        stats["queue_ms"],
                        stats["compute_input_ms"],
                        stats["compute_infer_ms"],
                        stats["compute_output_ms"],
                        stats["success_ms"],
                    ]
                )
    parts.append(
        _table(
            [
                "size",
                "concurrency",
                "model",
                "queue",
                "compute input",
                "compute infer",
                "compute output",
                "total",
            ],
            breakdown_rows,
        )
    )
    composing = [r for r in rows if r.model != "ensemble"]
    if composing:
        parts += ["", "## Composing models alone (perf_analyzer)", ""]
        parts.append(
            _table(
                ["model", "size", "concurrency", "img/s", "p50 ms", "p99 ms"],
                [
                    [r.model, r.size, r.concurrency, r.throughput, r.p50_ms, r.p99_ms]
                    for r in composing
                ],
            )
        )
    parts += ["", "## Response size per image (HTTP body, binary tensors)", ""]
    size_rows = []
    for size, formats in summary["response_bytes"].items():
        ratio = formats["rle"] / formats["dense"] if formats.get("dense") else float("nan")
        size_rows.append(
            [size, formats.get("none"), formats["rle"], formats["dense"], f"{100 * ratio:.2f}%"]
        )
    parts.append(_table(["size", "no masks", "RLE masks", "dense masks", "RLE / dense"], size_rows))
    memory = summary["memory"]
    parts += [
        "",
        "## Server memory (RSS of tritonserver and its Python-backend stubs)",
        "",
        f"- at rest, after loading: {memory['rest_total'] / MIB:.0f} MiB "
        f"({', '.join(f'{k} {v / MIB:.0f}' for k, v in memory['rest_by_process'].items())})",
        f"- under load: mean {memory['load_mean'] / MIB:.0f} MiB, "
        f"peak {memory['load_peak'] / MIB:.0f} MiB",
        "",
        "![throughput and latency](plot.png)",
        "",
    ]
    return "\n".join(parts)


@command("python -m benchmarks.report")
def main(argv: list[str] | None = None) -> int:
    """Rewrite report.md, results.csv and plot.png of a results folder from its summary.json."""
    import json

    parser = Parser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    summary = json.loads((args.folder / "summary.json").read_text())
    rows = [PerfRow(**row) for row in summary["rows"]]
    write_csv(rows, args.folder / "results.csv")
    plot(rows, args.folder / "plot.png")
    (args.folder / "report.md").write_text(markdown(summary, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
