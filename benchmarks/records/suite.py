"""Record how long a fresh clone's test suite took, from its log.

    time bash .ci/run 2>&1 | tee suite.log          # in a fresh clone; note the wall time
    .cache/venv-dev/bin/python -m benchmarks.records.suite --log suite.log --wall-seconds 2280 \
        --commit "$(git -C CLONE rev-parse --short HEAD)"

Adds the run (when it started, the commit, wall time, tests passed, this machine's CPU and
flags) to ``benchmarks/results/suite/summary.json``, keeps the slowest tests of the latest run
(pytest's ``--durations`` table at the end of the log), and writes ``report.md`` and
``plot.png`` beside it.  ``python -m benchmarks.records.figures`` puts the figures into
docs/testing.md.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from benchmarks import machine
from d2_triton.cache import CHECKOUT
from d2_triton.commands import Parser, command
from d2_triton.errors import InvalidArgumentError

OUT = CHECKOUT / "benchmarks" / "results" / "suite"
DURATION = re.compile(r"^\s*([\d.]+)s (call|setup|teardown)\s+(\S+)", re.M)
# pytest's last line, e.g. "=== 3 failed, 410 passed, 2 deselected in 2958.01s (0:49:18) ==="
RESULT = re.compile(r"^=+ (.*\d+ passed.*) in ([\d.]+)s", re.M)


def parse_log(text: str) -> dict:
    """Tests passed and failed, pytest's own seconds, and the durations table."""
    results = RESULT.findall(text)
    if not results:
        raise InvalidArgumentError("no pytest result line ('N passed ... in Xs') in the log")
    counts, seconds = results[-1]
    count = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error)", counts)}
    slowest = [
        {"seconds": float(seconds), "phase": phase, "test": test}
        for seconds, phase, test in DURATION.findall(text)
    ]
    return {
        "passed": count.get("passed", 0),
        "failed": count.get("failed", 0) + count.get("error", 0),
        "pytest_seconds": float(seconds),
        "slowest": sorted(slowest, key=lambda row: -row["seconds"])[:15],
    }


def run_table(runs: list[dict]) -> list[str]:
    """The runs as Markdown table lines (the report's and docs/testing.md's)."""
    lines = [
        "| started | commit | machine | wall time | tests |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {run['when']} | {run.get('commit', '')} | {run['machine']} | "
        f"{run['wall_seconds'] / 60:.1f} min | {run['passed']} passed, {run['failed']} failed |"
        for run in runs
    ]
    return lines


def write_report(summary: dict, out: Path) -> None:
    """report.md and plot.png (the slowest tests of the latest run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["# The test suite's time, fresh clone", "", *run_table(summary["runs"])]
    lines += ["", "Slowest tests of the latest run:", "", "| seconds | test |", "| --- | --- |"]
    lines += [f"| {row['seconds']:.1f} | `{row['test']}` |" for row in summary["slowest"]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    figure, axis = plt.subplots(figsize=(10, 5))
    rows = summary["slowest"][::-1]
    axis.barh([row["test"].split("::")[-1][:60] for row in rows], [r["seconds"] for r in rows])
    axis.set(xlabel="seconds", title="Slowest tests, latest fresh-clone run")
    axis.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    figure.savefig(out / "plot.png", dpi=100)
    plt.close(figure)


@command("python -m benchmarks.records.suite", expected=(json.JSONDecodeError,))
def main(argv: list[str] | None = None) -> int:
    """Add one run to the suite's summary."""
    parser = Parser(prog="python -m benchmarks.records.suite", description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True, help="the run's output")
    parser.add_argument("--wall-seconds", type=float, required=True, help="from `time`")
    parser.add_argument("--commit", default="", help="the commit the clone was at")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    parsed = parse_log(args.log.read_text(errors="replace"))
    cpu = machine.record()
    # The log was last written when the run ended: it started the wall time before that.
    started = args.log.stat().st_mtime - args.wall_seconds
    run = {
        "when": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "commit": args.commit,
        "machine": f"{cpu['cores']} cores of {cpu['cpu']} ({', '.join(cpu['flags'])})",
        "cpu_class": cpu["class"],
        "wall_seconds": args.wall_seconds,
        "passed": parsed["passed"],
        "failed": parsed["failed"],
        "pytest_seconds": parsed["pytest_seconds"],
    }
    path = args.out / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    summary["runs"].append(run)
    summary["slowest"] = parsed["slowest"]
    summary["command"] = "time bash .ci/run  (a fresh clone)"
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    write_report(summary, args.out)
    print(json.dumps(run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
