"""The first requests after the server starts, with and without the detector's warmup.

    .cache/venv-dev/bin/python -m benchmarks.speed.first_request --out benchmarks/results/X

For each variant (``model_warmup``: the export as it is; ``no warmup``: the same repository
without the detector's ``model_warmup``; preprocess and postprocess warm themselves up at
load in both), starts the real tritonserver, notes how long it took to be ready, then sends the same
JPEG ``--requests`` times, one after the other, over HTTP, and records each latency.  Writes
``first_request.json`` under ``--out``: what "the first request is no slower than the
tenth" is measured by.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.speed import inputs
from benchmarks.speed.exports import default_repository, work_folder
from d2_triton.cache import server_env
from d2_triton.client import DetectionClient
from d2_triton.commands import Parser, command
from d2_triton.server import ServerEnvironment, TritonServer
from d2_triton.testing.ports import loopback_server_settings
from export_tools.repository import derive as repository_tools

VARIANTS = {"model_warmup": None, "no warmup": False}


def measure_variant(repository: Path, payload: bytes, requests: int, log: Path) -> dict:
    """Readiness time and the latency of each of ``requests`` sequential requests."""
    environment = ServerEnvironment.inspect(server_env())
    started = time.perf_counter()
    with TritonServer(loopback_server_settings(repository), environment, log_path=log) as server:
        ready = time.perf_counter() - started
        latencies = []
        with DetectionClient(server.http_url) as client:
            for _ in range(requests):
                sent = time.perf_counter()
                client.detect(payload)
                latencies.append(time.perf_counter() - sent)
    return {
        "ready_seconds": ready,
        "latencies_ms": [1000 * value for value in latencies],
        "first_over_tenth": latencies[0] / latencies[min(9, len(latencies) - 1)],
        "first_over_median_of_rest": latencies[0] / sorted(latencies[1:])[len(latencies) // 2 - 1],
    }


@command("python -m benchmarks.speed.first_request")
def main(argv: list[str] | None = None) -> int:
    """Measure both variants and write first_request.json."""
    parser = Parser(
        prog="python -m benchmarks.speed.first_request", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--repository", type=Path, help="exported repository (default: export one)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", default="1280x960")
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args(argv)
    source = args.repository or default_repository()
    payload = inputs.photo_jpegs(inputs.parse_size(args.size), count=1)[0]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"size": args.size, "requests": args.requests, "variants": {}}
    for name, warmup in VARIANTS.items():
        work = work_folder("first-request") / name.replace(" ", "-")
        overrides = repository_tools.Overrides(detector_warmup=warmup)
        repository = repository_tools.derive(source, work, overrides)
        log = args.out / f"tritonserver-{name.replace(' ', '-')}.log"
        results["variants"][name] = measure_variant(repository, payload, args.requests, log)
        print(name, json.dumps(results["variants"][name]), flush=True)
    (args.out / "first_request.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
