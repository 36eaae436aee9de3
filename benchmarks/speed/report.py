"""Turn one benchmark run's measurements into results.csv, report.md and a PNG plot."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from benchmarks.speed import sections
from benchmarks.speed.inputs import by_width
from benchmarks.speed.perf import PerfRow
from d2_triton.commands import Parser, command


def write_csv(rows: list[PerfRow], path: Path) -> None:
    """The perf_analyzer rows as results.csv (without the breakdown)."""
    fields = [f.name for f in dataclasses.fields(PerfRow) if f.name != "server_breakdown"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: getattr(row, name) for name in fields})


def plot(rows: list[PerfRow], path: Path) -> None:
    """The ensemble's throughput and latency against concurrency, per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ensemble = [row for row in rows if row.model == "ensemble"]
    sizes = by_width({row.size for row in ensemble})
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


def markdown(summary: dict, rows: list[PerfRow]) -> str:
    """The report: each of ``sections``' parts that has something to say, then the plot."""
    parts = [
        sections.heading(summary),
        sections.against_bare(summary, rows),
        sections.eager_ratios(summary, rows),
        sections.time_shares(summary),
        sections.sweep(rows),
        sections.composing(rows),
        sections.response_sizes(summary),
        sections.memory(summary),
        ["![throughput and latency](plot.png)"],
    ]
    return "\n\n".join("\n".join(part) for part in parts if part) + "\n"


@command("python -m benchmarks.speed.report")
def main(argv: list[str] | None = None) -> int:
    """Rewrite report.md, results.csv and plot.png of a results folder from its summary.json."""
    import json

    parser = Parser(prog="python -m benchmarks.speed.report", description=main.__doc__)
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
