"""perf_analyzer's failures told apart, and a level it cannot settle measured again."""

import argparse
import os
import stat
from pathlib import Path

import pytest

from benchmarks.speed import perf, sweep
from benchmarks.speed.perf import AVERAGE_LATENCY_PARTS, UnstableMeasurementError


def fake_perf_analyzer(tmp_path: Path, output: str) -> Path:
    """A stand-in binary that prints ``output`` and fails, as perf_analyzer does."""
    binary = tmp_path / "perf_analyzer"
    binary.write_text(f"#!/bin/sh\necho '{output}'\nexit 1\n")
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    return binary


def run(binary: Path, tmp_path: Path):
    return perf.run_perf_analyzer(
        binary, "localhost:1", "ensemble", tmp_path / "in.json", 1, tmp_path / "out.csv", 8, 6, 15
    )


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch):
    monkeypatch.setattr(perf, "perf_analyzer_environment", lambda: dict(os.environ))


def test_an_unsettled_measurement_is_its_own_error(tmp_path):
    binary = fake_perf_analyzer(tmp_path, f"{perf.UNSTABLE} within 6 windows")
    with pytest.raises(UnstableMeasurementError):
        run(binary, tmp_path)


def test_other_failures_stay_runtime_errors(tmp_path):
    binary = fake_perf_analyzer(tmp_path, "failed to connect")
    with pytest.raises(RuntimeError) as failure:
        run(binary, tmp_path)
    assert not isinstance(failure.value, UnstableMeasurementError)


def csv_row(concurrency: int) -> dict[str, str]:
    row = {part: "1000" for part in AVERAGE_LATENCY_PARTS}
    row.update({"Concurrency": str(concurrency), "Inferences/Second": "1.5"})
    row.update({f"p{p} latency": "700000" for p in (50, 90, 95, 99)})
    return row


def sweeper_at(tmp_path: Path) -> sweep.Sweeper:
    """A Sweeper whose server is only an address (perf_analyzer is replaced)."""
    server = argparse.Namespace(http_url="localhost:1", settings=argparse.Namespace(admin_key=""))
    args = argparse.Namespace(max_trials=6, stability=15, variant="int8")
    return sweep.Sweeper(server, tmp_path / "pa", tmp_path, args, tmp_path / "log")


def test_a_level_not_settled_is_measured_again_with_windows_twice_as_long(tmp_path, monkeypatch):
    counts = []

    def settles_second_time(*args, **kwargs):
        counts.append(args[6])
        if len(counts) == 1:
            raise UnstableMeasurementError("not settled")
        return csv_row(args[4])

    monkeypatch.setattr(sweep, "run_perf_analyzer", settles_second_time)
    sweeper = sweeper_at(tmp_path)
    row = sweeper.measure("ensemble", "1280x960", tmp_path / "in.json", 2, 8)
    assert counts == [8, 16]
    assert (row.concurrency, row.throughput, row.p50_ms) == (2, 1.5, 700.0)


def test_a_level_that_never_settles_fails(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise UnstableMeasurementError("not settled")

    monkeypatch.setattr(sweep, "run_perf_analyzer", never)
    sweeper = sweeper_at(tmp_path)
    with pytest.raises(UnstableMeasurementError):
        sweeper.measure("ensemble", "1280x960", tmp_path / "in.json", 1, 8)
