r"""What the default suite's soak check catches, measured on soaks without a leak.

    .cache/venv-dev/bin/python -m benchmarks.load.soak_sensitivity \\
        --soak benchmarks/results/soak/*/ --out benchmarks/results/soak

Replays the memory that soaks recorded (``memory.csv`` and ``soak.json`` of
``python -m benchmarks.load.soak``) in every window of the check's length (one every 5 s), judged
exactly as the check judges a run: warm-up excluded, 10 s floors, the rise from the first
third's lowest floor to the last third's, against :data:`benchmarks.load.soak.FLOOR_RISE_LIMIT_MIB`.
Without a leak, a window over the limit is a false alarm.  Then it adds a leak of a few sizes
to the same samples (MiB per good request, accruing at each soak's mean rate of good
requests) and counts the windows that the check would have failed.  Writes ``summary.json``,
``report.md`` and ``sensitivity.png`` to ``--out``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from benchmarks import machine
from benchmarks.load.soak import (
    CHECK_DURATION_S,
    FLOOR_RISE_LIMIT_MIB,
    FLOOR_WINDOW_S,
    MIB,
    WARMUP_FRACTION,
    floor_growth,
    warm_floors,
)
from d2_triton.commands import Parser, command

LEAKS_MIB_PER_REQUEST = (0.0, 0.25, 0.5, 1.0, 2.0)
STEP_S = 5.0


def read_totals(memory_csv: Path) -> list[tuple[float, float]]:
    """(seconds, total RSS in bytes) per sample of a soak's ``memory.csv``."""
    with open(memory_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [(float(row["seconds"]), float(row["total"])) for row in rows]


def window_rises(
    totals: list[tuple[float, float]], length_s: float, leak_mib_per_s: float
) -> list[float]:
    """The check's floor rise (MiB) in each ``length_s`` window, a leak added to the samples."""
    rises = []
    for start in np.arange(0.0, totals[-1][0] - length_s + STEP_S / 2, STEP_S):
        window = [
            (t - start, rss + leak_mib_per_s * (t - start) * MIB)
            for t, rss in totals
            if start <= t < start + length_s
        ]
        first, last, _ = floor_growth(warm_floors(window, WARMUP_FRACTION, FLOOR_WINDOW_S))
        rises.append(float(last - first))
    return rises


def recorded_on(soaks: list[Path]) -> dict[str, dict]:
    """Each soak's machine (CPU, cores, flags and class) as its ``soak.json`` recorded it."""
    machines = {}
    for folder in soaks:
        recorded = json.loads((folder / "soak.json").read_text()).get("machine")
        if recorded is None:  # soaks recorded before soak.json named the machine
            machines[folder.name] = {"class": "not recorded"}
        else:
            machines[folder.name] = {**recorded, "class": machine.class_of(recorded["flags"])}
    return machines


def replay(soaks: list[Path], length_s: float) -> dict[float, list[float]]:
    """Leak size (MiB per good request) -> the check's rise in every window of every soak.

    A soak shorter than ``length_s`` has no window; ``main`` leaves it out of the summary.
    """
    rises: dict[float, list[float]] = {leak: [] for leak in LEAKS_MIB_PER_REQUEST}
    for folder in soaks:
        soak = json.loads((folder / "soak.json").read_text())
        good_per_s = soak["load"]["good_ok"] / soak["seconds_of_load"]
        totals = read_totals(folder / "memory.csv")
        for leak in LEAKS_MIB_PER_REQUEST:
            rises[leak] += window_rises(totals, length_s, leak * good_per_s)
    return rises


def plot(rises: dict[float, list[float]], limit: float, path: Path) -> None:
    """The no-leak rises of each window length against the limit, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    axis.boxplot(list(rises.values()), whis=(0, 100))
    axis.set_xticks(range(1, len(rises) + 1), [f"{leak:g}" for leak in rises])
    axis.axhline(limit, color="red", linestyle="--", label=f"limit {limit:g} MiB")
    axis.set(
        xlabel="leak added (MiB per good request)",
        ylabel="floor rise (MiB)",
        title="the soak check replayed on recorded soaks",
    )
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@command("python -m benchmarks.load.soak_sensitivity")
def main(argv: list[str] | None = None) -> int:
    """Replay the recordings against the limit, then write the report."""
    parser = Parser(
        prog="python -m benchmarks.load.soak_sensitivity",
        description=__doc__,
    )
    parser.add_argument("--soak", type=Path, nargs="+", required=True, help="soaks' --out folders")
    parser.add_argument("--length", type=float, default=CHECK_DURATION_S, help="seconds")
    parser.add_argument("--limit", type=float, default=FLOOR_RISE_LIMIT_MIB, help="MiB")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    soaks = sorted(folder.resolve() for folder in args.soak)
    soaks = [soak for soak in soaks if read_totals(soak / "memory.csv")[-1][0] >= args.length]
    rises = replay(soaks, args.length)
    rows = [
        {
            "leak_mib_per_good_request": leak,
            "windows": len(values),
            "windows_failing_the_check": sum(1 for rise in values if rise >= args.limit),
            "rise_mib_min": min(values),
            "rise_mib_max": max(values),
        }
        for leak, values in rises.items()
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "soaks": [folder.name for folder in soaks],
        "machines": recorded_on(soaks),
        "window_s": args.length,
        "limit_mib": args.limit,
        "leaks": rows,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [
        f"# The soak check replayed: {args.length:g} s windows, limit {args.limit:g} MiB",
        "",
        f"Soaks at least that long: {', '.join(summary['soaks'])}.",
        "",
        "| leak (MiB per good request) | windows failing the check | floor rise (MiB) |",
        "|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['leak_mib_per_good_request']:g} | {row['windows_failing_the_check']} of "
            f"{row['windows']} | {row['rise_mib_min']:.1f} .. {row['rise_mib_max']:.1f} |"
        )
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    plot(rises, args.limit, args.out / "sensitivity.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
