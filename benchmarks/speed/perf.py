"""Run Triton's perf_analyzer, read Triton's per-model statistics, sample server memory.

perf_analyzer is the binary shipped in the ``tritonclient==2.51.0`` wheel (newer wheels lack
it).  It needs ``libb64.so.0d`` (Debian package libb64-0d) and ``libcudart.so.12`` (PyPI
``nvidia-cuda-runtime-cu12``) even on CPU; ``perf_analyzer_command`` finds both.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from d2_triton.names import ADMIN_HEADER
from d2_triton.server.processes import rss_by_process

# perf_analyzer's CSV splits the average latency into these parts (microseconds).
AVERAGE_LATENCY_PARTS = (
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
)
MS_PER_NS = 1e-6
MS_PER_US = 1e-3


def cudart_directory() -> Path:
    """Where pip's CUDA runtime keeps libcudart.so.12 (perf_analyzer links it)."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "perf_analyzer needs libcudart.so.12: pip install nvidia-cuda-runtime-cu12"
        )
    for location in spec.submodule_search_locations:
        if (Path(location) / "lib" / "libcudart.so.12").exists():
            return Path(location) / "lib"
    raise RuntimeError("nvidia-cuda-runtime-cu12 is installed but has no lib/libcudart.so.12")


def perf_analyzer_environment() -> dict[str, str]:
    """This environment with the CUDA runtime on LD_LIBRARY_PATH."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(cudart_directory()), *filter(None, [env.get("LD_LIBRARY_PATH")])]
    )
    return env


@dataclass
class PerfRow:
    """One concurrency level of one perf_analyzer run (latencies in ms)."""

    model: str
    size: str
    concurrency: int
    throughput: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    variant: str = ""
    server_breakdown: dict[str, dict[str, float]] = field(default_factory=dict)


class UnstableMeasurementError(RuntimeError):
    """perf_analyzer found no three windows within the stability percentage."""


# What perf_analyzer prints when it gives up on settling (its advice: longer windows).
UNSTABLE = "Failed to obtain stable measurement"


def run_perf_analyzer(
    binary: Path,
    url: str,
    model: str,
    input_data: Path,
    concurrency: int,
    csv_path: Path,
    request_count: int,
    max_trials: int,
    stability: int,
    request_parameters: dict[str, str] | None = None,
    log_path: Path | None = None,
    admin_key: str = "",
) -> dict[str, str]:
    """One perf_analyzer measurement at one concurrency level; returns its CSV row.

    perf_analyzer reads Triton's statistics, which the launcher restricts: ``admin_key``
    goes with every call as the ``names.ADMIN_HEADER`` header (``-H``).
    """
    command = [
        str(binary),
        "-m",
        model,
        "-u",
        url,
        "-i",
        "http",
        "--input-data",
        str(input_data),
        "--concurrency-range",
        f"{concurrency}:{concurrency}",
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        str(max(request_count, concurrency * 2)),
        "--max-trials",
        str(max_trials),
        "--stability-percentage",
        str(stability),
        "-f",
        str(csv_path),
    ]
    for name, value in (request_parameters or {}).items():
        command += ["--request-parameter", f"{name}:{value}:string"]
    if admin_key:
        command += ["-H", f"{ADMIN_HEADER}:{admin_key}"]
    result = subprocess.run(
        command, env=perf_analyzer_environment(), capture_output=True, text=True
    )
    if log_path:
        with open(log_path, "a") as log:
            shown = " ".join(command).replace(admin_key or "\0", "***")
            log.write(shown + "\n" + result.stdout + result.stderr + "\n")
    if result.returncode != 0 or not csv_path.exists():
        raise _failure(result, f"perf_analyzer failed for {model} at concurrency {concurrency}")
    with open(csv_path) as handle:
        return next(csv.DictReader(handle))


def _failure(result: subprocess.CompletedProcess, what: str) -> RuntimeError:
    """The error for a failed run, with the end of its output; unsettled ones are their own."""
    kind = UnstableMeasurementError if UNSTABLE in result.stdout else RuntimeError
    return kind(f"{what}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


def to_perf_row(row: dict[str, str], model: str, size: str, variant: str) -> PerfRow:
    """One perf_analyzer CSV row as a :class:`PerfRow`."""
    return PerfRow(
        model=model,
        size=size,
        concurrency=int(row["Concurrency"]),
        throughput=float(row["Inferences/Second"]),
        p50_ms=float(row["p50 latency"]) * MS_PER_US,
        p90_ms=float(row["p90 latency"]) * MS_PER_US,
        p95_ms=float(row["p95 latency"]) * MS_PER_US,
        p99_ms=float(row["p99 latency"]) * MS_PER_US,
        avg_ms=sum(float(row[column]) for column in AVERAGE_LATENCY_PARTS) * MS_PER_US,
        variant=variant,
    )


def model_statistics(http_url: str, admin_key: str) -> dict[str, dict[str, int]]:
    """Cumulative per-model counters from Triton's statistics endpoint (restricted: key)."""
    request = urllib.request.Request(
        f"http://{http_url}/v2/models/stats", headers={ADMIN_HEADER: admin_key}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        document = json.load(response)
    statistics = {}
    for model in document["model_stats"]:
        inference = model["inference_stats"]
        statistics[model["name"]] = {
            "count": inference["success"]["count"],
            **{
                key: inference[key]["ns"]
                for key in ("success", "queue", "compute_input", "compute_infer", "compute_output")
            },
        }
    return statistics


def breakdown(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """Average ms per request, per model, between two statistics snapshots."""
    result = {}
    for name, counters in after.items():
        count = counters["count"] - before.get(name, {}).get("count", 0)
        if count <= 0:
            continue
        result[name] = {
            "requests": count,
            **{
                f"{key}_ms": (counters[key] - before[name][key]) * MS_PER_NS / count
                for key in ("success", "queue", "compute_input", "compute_infer", "compute_output")
            },
        }
    return result


class MemorySampler:
    """Samples the server's process-tree RSS in the background (tritonserver + stubs)."""

    def __init__(self, root_pid: int, interval: float = 0.5):
        self.root_pid = root_pid
        self.interval = interval
        self.samples: list[tuple[float, int, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def snapshot(self) -> tuple[int, dict[str, int]]:
        """Total RSS now, and each process's."""
        by_name = rss_by_process(self.root_pid)
        return sum(by_name.values()), by_name

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            total, by_name = self.snapshot()
            self.samples.append((time.monotonic() - started, total, by_name))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def response_size(http_url: str, payload: bytes, mask_format: str) -> int:
    """Bytes of the HTTP response body for one image (binary tensor protocol)."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image_bytes",
                    "shape": [len(payload)],
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": len(payload)},
                }
            ],
            "parameters": {"mask_format": mask_format, "binary_data_output": True},
        }
    ).encode()
    request = urllib.request.Request(
        f"http://{http_url}/v2/models/ensemble/infer",
        data=header + payload,
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return len(response.read())
