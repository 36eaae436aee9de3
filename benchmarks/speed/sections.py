"""The sections of a speed report (``report.markdown``), each a list of Markdown lines."""

from __future__ import annotations

from benchmarks.speed.inputs import by_width
from benchmarks.speed.perf import PerfRow

MIB = 1024 * 1024


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    """A Markdown table; floats get the digits their size deserves."""

    def cell(value: object) -> str:
        if not isinstance(value, float):
            return str(value)
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def best(rows: list[PerfRow], model: str, size: str) -> PerfRow:
    """``model``'s row at ``size`` with the highest throughput (its best concurrency)."""
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


def heading(summary: dict) -> list[str]:
    """The title, the machine, the model, the settings and the command."""
    model = summary["model"]
    return [
        f"# Benchmark: {summary['variant']}",
        "",
        f"- when: {summary['when']}; machine: {summary['machine']}",
        f"- model: `{model['config']}`, weights: {model['weights']}, "
        f"score_thresh_test {model['score_thresh_test']}",
        f"- settings: {summary['settings']}",
        f"- command: `{summary['command']}`",
    ]


def against_bare(summary: dict, rows: list[PerfRow]) -> list[str]:
    """The ensemble's best throughput against the bare model and the eager loop, per size."""
    components = summary["components"]["sizes"]
    eager = (summary.get("eager") or {}).get("sizes", {})
    found = []
    for size in by_width(components):
        top = best(rows, "ensemble", size)
        bare = components[size]["model"]["throughput"]
        row = [size, components[size]["detections_per_image"], bare, top.throughput]
        row += [top.concurrency, top.throughput / bare]
        if size in eager:
            row += [eager[size]["throughput"], top.throughput / eager[size]["throughput"]]
        else:
            row += ["-", "-"]
        found.append(row)
    header = ["size", "detections/img", "bare model img/s", "ensemble img/s", "at concurrency"]
    header += ["ensemble / bare", "Detectron2 eager img/s", "ensemble / eager"]
    return [
        "## Ensemble vs the bare model (same run)",
        "",
        "Bare model: the exported detector called in-process on already-preprocessed images, "
        f"{summary['components']['threads']} threads. Ensemble: perf_analyzer over "
        "HTTP, raw JPEG bytes in, labelled detections with RLE masks out, best concurrency. "
        "Detectron2 eager: `DefaultPredictor` in a loop (read_image, resize, model, "
        "detector_postprocess with pasted masks).",
        "",
        *table(header, found),
    ]


def eager_ratios(summary: dict, rows: list[PerfRow]) -> list[str]:
    """The throughput and latency ratios against DefaultPredictor (none without the loop)."""
    ratios = against_eager(summary, rows)
    if not ratios:
        return []
    keys = ("eager_img_per_s", "ensemble_img_per_s", "throughput_ratio")
    keys += ("eager_ms_per_image", "ensemble_p50_ms_alone", "latency_ratio")
    header = ["size", "eager img/s", "ensemble img/s (best)", "**throughput ratio**"]
    header += ["eager ms/img", "ensemble p50 ms, alone", "**latency ratio**"]
    found = [[size, *(ratios[size][key] for key in keys)] for size in by_width(ratios)]
    title = "## Against Detectron2's DefaultPredictor (same run, same photos)"
    return [title, "", *table(header, found)]


def time_shares(summary: dict) -> list[str]:
    """Preprocess and postprocess against the model, in-process, per image."""
    components = summary["components"]["sizes"]
    found = []
    for size in by_width(components):
        pre, model, post = (components[size][k] for k in ("preprocess", "model", "postprocess"))
        found.append(
            [
                *(size, pre["wall_ms"], pre["cpu_ms"], post["wall_ms"], post["cpu_ms"]),
                *(model["wall_ms"], model["cpu_ms"]),
                100 * (pre["cpu_ms"] + post["cpu_ms"]) / model["cpu_ms"],
                100 * (pre["wall_ms"] + post["wall_ms"]) / model["wall_ms"],
            ]
        )
    header = ["size", "pre wall ms", "pre CPU ms", "post wall ms", "post CPU ms"]
    header += ["model wall ms", "model CPU ms", "pre+post CPU % of model CPU"]
    header += ["pre+post wall % of model wall"]
    return ["## Where the time goes (in-process, per image)", "", *table(header, found)]


def sweep(rows: list[PerfRow]) -> list[str]:
    """The ensemble's perf_analyzer sweep, then Triton's per-model breakdown of it."""
    ensemble = [r for r in rows if r.model == "ensemble"]
    found = [
        [r.size, r.concurrency, r.throughput, r.p50_ms, r.p95_ms, r.p99_ms, r.avg_ms]
        for r in ensemble
    ]
    stages = ("queue_ms", "compute_input_ms", "compute_infer_ms", "compute_output_ms", "success_ms")
    breakdown = [
        [r.size, r.concurrency, name, *(stats[key] for key in stages)]
        for r in ensemble
        for name in ("preprocess", "detector", "postprocess")
        if (stats := r.server_breakdown.get(name))
    ]
    header = ["size", "concurrency", "model", "queue", "compute input", "compute infer"]
    header += ["compute output", "total"]
    return [
        "## Ensemble sweep (perf_analyzer)",
        "",
        *table(["size", "concurrency", "img/s", "p50 ms", "p95 ms", "p99 ms", "avg ms"], found),
        "",
        "Server-side time per request and composing model (Triton statistics, ms):",
        "",
        *table(header, breakdown),
    ]


def composing(rows: list[PerfRow]) -> list[str]:
    """Each composing model measured alone (none when the run skipped them)."""
    alone = [r for r in rows if r.model != "ensemble"]
    if not alone:
        return []
    header = ["model", "size", "concurrency", "img/s", "p50 ms", "p99 ms"]
    found = [[r.model, r.size, r.concurrency, r.throughput, r.p50_ms, r.p99_ms] for r in alone]
    return ["## Composing models alone (perf_analyzer)", "", *table(header, found)]


def response_sizes(summary: dict) -> list[str]:
    """HTTP response bytes per image for each mask format."""
    found = []
    for size, formats in summary["response_bytes"].items():
        ratio = formats["rle"] / formats["dense"] if formats.get("dense") else float("nan")
        found.append(
            [size, formats.get("none"), formats["rle"], formats["dense"], f"{100 * ratio:.2f}%"]
        )
    header = ["size", "no masks", "RLE masks", "dense masks", "RLE / dense"]
    return ["## Response size per image (HTTP body, binary tensors)", "", *table(header, found)]


def memory(summary: dict) -> list[str]:
    """The server's memory at rest and under load."""
    figures = summary["memory"]
    at_rest = ", ".join(f"{k} {v / MIB:.0f}" for k, v in figures["rest_by_process"].items())
    return [
        "## Server memory (RSS of tritonserver and its Python-backend stubs)",
        "",
        f"- at rest, after loading: {figures['rest_total'] / MIB:.0f} MiB ({at_rest})",
        f"- under load: mean {figures['load_mean'] / MIB:.0f} MiB, "
        f"peak {figures['load_peak'] / MIB:.0f} MiB",
    ]
