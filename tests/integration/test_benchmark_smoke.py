"""A tiny run of the benchmark command, so it keeps working (the real runs are opt-in)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from helpers.exports import REPO_ROOT


def failure_report(result: subprocess.CompletedProcess, out: Path) -> str:
    """What a failed run said, without the torch warnings, and the tails of its two logs."""
    said = [line for line in result.stderr.splitlines() if "Warning" not in line]
    last = said[-1] if said else ""  # first, so that pytest's one-line summary shows it
    parts = [f"exit {result.returncode}: {last}", result.stdout[-2000:], "\n".join(said)[-4000:]]
    for name in ("tritonserver.log", "perf_analyzer.log"):
        log = out / name
        if log.is_file():
            parts.append(f"--- {name} (tail)\n" + log.read_text(errors="replace")[-3000:])
    return "\n".join(parts)


def test_benchmark_command_produces_a_report(tmp_path, server_pool, fast_repository):
    """On the fast repository: the command's steps are what is checked, not its figures."""
    server_pool.stop()  # the benchmark starts its own server; keep the 2 cores for it
    repository = fast_repository
    out = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.speed.run",
            "--repository",
            str(repository),
            "--out",
            str(out),
            "--variant",
            "smoke",
            "--sizes",
            "640x480",
            "--photos-per-size",
            "1",
            "--concurrency",
            "1",
            "--composing-concurrency",
            "1",
            "--request-count",
            "1",
            "--max-trials",
            "3",
            "--stability",
            "1000",
            "--repeats",
            "1",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, failure_report(result, out)
    for name in ("report.md", "results.csv", "summary.json", "plot.png"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert {row["model"] for row in rows} == {"ensemble", "preprocess", "detector", "postprocess"}
    assert all(float(row["throughput"]) > 0 for row in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["components"]["sizes"]["640x480"]["model"]["throughput"] > 0
    assert summary["eager"]["sizes"]["640x480"]["throughput"] > 0
    sizes = summary["response_bytes"]["640x480"]
    assert sizes["none"] < sizes["rle"] < sizes["dense"]
    assert summary["memory"]["rest_total"] > 0
    report = (out / "report.md").read_text()
    assert "ensemble / bare" in report and "Detectron2 eager" in report
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
