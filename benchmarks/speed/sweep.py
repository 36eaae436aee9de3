"""The served part of a speed benchmark.

The real tritonserver, perf_analyzer sweeps of the ensemble and of each composing model
alone, Triton's per-model breakdown, memory and response sizes.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.speed.exports import backend_config
from benchmarks.speed.perf import (
    MemorySampler,
    PerfRow,
    UnstableMeasurementError,
    breakdown,
    model_statistics,
    response_size,
    run_perf_analyzer,
    to_perf_row,
)
from d2_triton.cache import server_env
from d2_triton.server import ServerEnvironment, TritonServer
from d2_triton.testing.ports import loopback_server_settings
from export_tools.progress import progress

# preprocess' input is the ensemble's (image_bytes); the others' were written by
# benchmarks.speed.components from the same photos.
COMPOSING_INPUTS = {
    "preprocess": "ensemble.json",
    "detector": "detector.json",
    "postprocess": "postprocess.json",
}


def levels(text: str) -> list[int]:
    """Concurrency levels from ``1,2,3``."""
    return [int(item) for item in text.split(",") if item.strip()]


@dataclass
class Served:
    """What the served part measured."""

    rows: list[PerfRow] = field(default_factory=list)
    response_bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    memory: dict = field(default_factory=dict)


@dataclass
class Sweeper:
    """perf_analyzer against one server, with the run's settings (``run``'s arguments)."""

    server: TritonServer
    perf_analyzer: Path
    work: Path
    args: argparse.Namespace
    log: Path

    def measure(self, model: str, label: str, data: Path, level: int, count: int) -> PerfRow:
        """One perf_analyzer measurement of ``model`` at one concurrency.

        A level perf_analyzer cannot settle is measured once more with windows twice as long,
        as it advises (two of three int8 runs on the AVX-512 EPYC needed it at one level);
        both commands and their outputs are in the log.
        """
        try:
            raw = self._perf_analyzer(model, label, data, level, count)
        except UnstableMeasurementError:
            print(f"   {model} {label} c={level}: not settled, windows of {2 * count}", flush=True)
            raw = self._perf_analyzer(model, label, data, level, 2 * count)
        return to_perf_row(raw, model, label, self.args.variant)

    def _perf_analyzer(self, model: str, label: str, data: Path, level: int, count: int):
        return run_perf_analyzer(
            self.perf_analyzer,
            self.server.http_url,
            model,
            data,
            level,
            self.work / f"{model}-{label}-c{level}.csv",
            count,
            self.args.max_trials,
            self.args.stability,
            log_path=self.log,
            admin_key=self.server.settings.admin_key,
        )

    def ensemble(self, label: str) -> list[PerfRow]:
        """The ensemble over the concurrency sweep, each level with Triton's breakdown."""
        rows, url, key = [], self.server.http_url, self.server.settings.admin_key
        data = self.work / "inputs" / label / "ensemble.json"
        for level in levels(self.args.concurrency):
            before = model_statistics(url, key)
            row = self.measure("ensemble", label, data, level, self.args.request_count)
            row.server_breakdown = breakdown(before, model_statistics(url, key))
            rows.append(row)
            print(
                f"   ensemble {label} c={level}: {row.throughput:.3f} img/s, "
                f"p50 {row.p50_ms:.0f} ms",
                flush=True,
            )
        return rows

    def composing(self, label: str) -> list[PerfRow]:
        """Each composing model alone on the same photos' intermediate tensors."""
        rows = []
        for model, file in COMPOSING_INPUTS.items():
            # pre/post take milliseconds: count more requests per window to be stable
            count = self.args.request_count * (1 if model == "detector" else 16)
            data = self.work / "inputs" / label / file
            for level in levels(self.args.composing_concurrency):
                rows.append(self.measure(model, label, data, level, count))
        return rows


def measure_served(
    repository: Path, photos: dict[str, list[Path]], work: Path, out: Path, args
) -> Served:
    """Serve ``repository`` and sweep it on ``photos`` (inputs written under ``work``)."""
    environment = ServerEnvironment.inspect(server_env())
    server_settings = loopback_server_settings(repository, backend_config=backend_config(args))
    served = Served()
    log = out / "perf_analyzer.log"
    log.unlink(missing_ok=True)
    with TritonServer(server_settings, environment, log_path=out / "tritonserver.log") as server:
        sampler = MemorySampler(server.process.pid)
        for paths in photos.values():  # the first request of each shape pays for profiling
            for path in paths:
                response_size(server.http_url, path.read_bytes(), "rle")
        rest_total, rest_by_process = sampler.snapshot()
        sweeper = Sweeper(server, server_env() / "bin" / "perf_analyzer", work, args, log)
        with sampler:
            for label in progress(photos, "ensemble, by image size"):
                served.rows += sweeper.ensemble(label) + sweeper.composing(label)
                served.response_bytes[label] = {
                    fmt: response_size(server.http_url, photos[label][0].read_bytes(), fmt)
                    for fmt in ("none", "rle", "dense")
                }
    loaded = [total for _, total, _ in sampler.samples]
    served.memory = {
        "rest_total": rest_total,
        "rest_by_process": rest_by_process,
        "load_mean": statistics.mean(loaded) if loaded else 0,
        "load_peak": max(loaded, default=0),
        "samples": [(round(t, 1), total) for t, total, _ in sampler.samples],
    }
    return served
