"""One command: baselines, the real server, perf_analyzer sweeps, report.

    .cache/venv-dev/bin/python -m benchmarks.run --out benchmarks/results/cpu-2core

In one run, on the same photos (real, JPEG, at each --sizes):
1. in-process baselines in the server environment: bare TorchScript model, preprocess
   alone, postprocess alone (benchmarks/components.py);
2. Detectron2's eager DefaultPredictor loop in the dev environment (benchmarks/eager.py);
3. the real tritonserver on the repository (with --variant settings applied to a copy),
   perf_analyzer over a concurrency sweep against the ensemble and each composing model,
   Triton's per-model statistics for the server-side breakdown, RSS sampling, response
   sizes per mask format;
4. results.csv, summary.json, report.md and plot.png under --out.

Without --repository it exports the default model (Mask R-CNN R50-FPN; zoo weights, or a
fixed-seed random init where they cannot be downloaded) into .cache/bench-exports/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import inputs, report
from benchmarks.perf import (
    MemorySampler,
    PerfRow,
    breakdown,
    model_statistics,
    response_size,
    run_perf_analyzer,
    to_perf_row,
)
from d2_triton.cache import cache_dir
from d2_triton.commands import Parser, command
from d2_triton.model_config import DetectorParameters
from d2_triton.names import DETECTOR_MODEL, POSTPROCESS_MODEL, PREPROCESS_MODEL
from d2_triton.server import ServerEnvironment, TritonServer
from d2_triton.testing.fingerprint import export_fingerprint
from d2_triton.testing.ports import loopback_server_settings
from export_tools.progress import progress
from export_tools.repository import configs
from export_tools.repository import derive as repository_tools
from export_tools.repository.writer import export_info_path, read_export_info

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = cache_dir()
SERVER_ENV = CACHE / "venv"
DEFAULT_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repository", type=Path, help="exported repository (default: export one)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "latest")
    parser.add_argument("--sizes", default="640x480,1280x960,1920x1080")
    parser.add_argument("--concurrency", default="1,2,3,4", help="ensemble sweep")
    parser.add_argument(
        "--composing-concurrency",
        default="1,2",
        help="sweep for each composing model alone ('' to skip)",
    )
    parser.add_argument(
        "--request-count", type=int, default=8, help="requests per perf_analyzer measurement window"
    )
    parser.add_argument(
        "--max-trials",
        type=int,
        default=6,
        help="perf_analyzer needs 3 windows within --stability to report",
    )
    parser.add_argument("--stability", type=int, default=15, help="percent")
    parser.add_argument("--repeats", type=int, default=3, help="in-process repetitions per photo")
    parser.add_argument("--photos-per-size", type=int, default=len(inputs.SAMPLES))
    parser.add_argument("--no-eager", action="store_true", help="skip the Detectron2 eager loop")
    parser.add_argument(
        "--eager-json",
        type=Path,
        help="take Detectron2's figures from this eager.json (written earlier in the same "
        "benchmark, on the same photos) instead of running the loop again",
    )
    parser.add_argument("--variant", default="shipped", help="a name for these settings")
    parser.add_argument("--detector-instances", type=int)
    parser.add_argument("--detector-threads", type=int)
    parser.add_argument("--preprocess-instances", type=int)
    parser.add_argument("--postprocess-instances", type=int)
    parser.add_argument(
        "--shm-default-mb", type=int, help="Python backend shm-default-byte-size (MiB)"
    )
    parser.add_argument(
        "--shm-growth-mb", type=int, help="Python backend shm-growth-byte-size (MiB)"
    )
    return parser.parse_args(argv)


def default_repository(*options: str) -> Path:
    """The default model exported with ``options`` (cached by them and the exporter's code)."""
    key = export_fingerprint(*options)
    repository = CACHE / "bench-exports" / f"mask_rcnn_R_50_FPN_3x-{key}"
    if not export_info_path(repository).is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "export_tools.export",
                "--config",
                DEFAULT_CONFIG,
                "--weights",
                "zoo",
                "--fallback-random",
                "--repository",
                str(repository),
                *options,
            ],
            cwd=REPO_ROOT,
            check=True,
        )
    return repository


def variant_repository(source: Path, target: Path, args: argparse.Namespace) -> Path:
    """A copy of ``source`` with this variant's instance and thread settings."""
    return repository_tools.derive(
        source,
        target,
        repository_tools.Overrides(
            detector_instances=args.detector_instances,
            detector_threads=args.detector_threads,
            preprocess_instances=args.preprocess_instances,
            postprocess_instances=args.postprocess_instances,
        ),
    )


def settings_of(repository: Path, args: argparse.Namespace) -> dict:
    settings = {}
    for model in (PREPROCESS_MODEL, DETECTOR_MODEL, POSTPROCESS_MODEL):
        config = configs.parse_pbtxt((repository / model / "config.pbtxt").read_text())
        settings[f"{model}_instances"] = config.instance_group[0].count
    detector = configs.read_parameters(
        DetectorParameters, repository / DETECTOR_MODEL / "config.pbtxt"
    )
    settings["detector_threads"] = detector.intra_op_threads
    settings["backend_config"] = backend_config(args)
    return settings


def backend_config(args: argparse.Namespace) -> list[str]:
    config = []
    if args.shm_default_mb:
        config.append(f"python,shm-default-byte-size={args.shm_default_mb * 1024 * 1024}")
    if args.shm_growth_mb:
        config.append(f"python,shm-growth-byte-size={args.shm_growth_mb * 1024 * 1024}")
    return config


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{os.cpu_count()} CPU cores ({model}), {platform.system()} {platform.release()}"


# The CPU features the precisions depend on: bf16 natively (AMX or AVX512-BF16), int8 dot
# products (AVX512-VNNI, or AMX's int8 tiles).
CPU_FLAGS = ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu_flags() -> dict[str, bool]:
    """Which of :data:`CPU_FLAGS` this machine's ``/proc/cpuinfo`` lists."""
    listed = next(
        (
            set(line.split(":", 1)[1].split())
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        ),
        set(),
    )
    return {flag: flag in listed for flag in CPU_FLAGS}


def levels(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


@command("python -m benchmarks.run")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    work = CACHE / "bench-work" / args.variant
    source = (args.repository or default_repository()).absolute()
    repository = variant_repository(source, work / "repository", args)
    sizes = [inputs.parse_size(text) for text in args.sizes.split(",")]
    photos = inputs.write_photos(work / "photos", sizes, args.photos_per_size)
    info = read_export_info(repository)

    print("== in-process baselines (server environment)", flush=True)
    subprocess.run(
        [
            str(SERVER_ENV / "bin" / "python"),
            "-m",
            "benchmarks.components",
            "--repository",
            str(repository),
            "--photos",
            str(work / "photos"),
            "--out",
            str(work / "inputs"),
            "--repeats",
            str(args.repeats),
        ],
        cwd=REPO_ROOT,
        check=True,
    )
    components = json.loads((work / "inputs" / "components.json").read_text())
    eager = None
    if args.eager_json:
        eager = json.loads(args.eager_json.read_text())
    elif not args.no_eager:
        print("== Detectron2 eager DefaultPredictor (dev environment)", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.eager",
                "--repository",
                str(repository),
                "--photos",
                str(work / "photos"),
                "--out",
                str(work),
                "--threads",
                str(components["threads"]),
                "--repeats",
                str(max(1, args.repeats - 1)),
            ],
            cwd=REPO_ROOT,
            check=True,
        )
        eager = json.loads((work / "eager.json").read_text())
    for label, paths in photos.items():
        requests = [{"image_bytes": np.frombuffer(p.read_bytes(), np.uint8)} for p in paths]
        inputs.write_input_data(work / "inputs" / label / "ensemble.json", requests)

    print("== tritonserver + perf_analyzer", flush=True)
    environment = ServerEnvironment.inspect(SERVER_ENV)
    perf_analyzer = SERVER_ENV / "bin" / "perf_analyzer"
    server_settings = loopback_server_settings(repository, backend_config=backend_config(args))
    rows: list[PerfRow] = []
    response_bytes = {}
    log = out / "perf_analyzer.log"
    log.unlink(missing_ok=True)
    with TritonServer(server_settings, environment, log_path=out / "tritonserver.log") as server:
        sampler = MemorySampler(server.process.pid)
        for paths in photos.values():  # the first request of each shape pays for profiling
            for path in paths:
                response_size(server.http_url, path.read_bytes(), "rle")
        rest_total, rest_by_process = sampler.snapshot()
        with sampler:
            for label in progress(photos, "ensemble, by image size"):
                data = work / "inputs" / label
                for level in levels(args.concurrency):
                    key = server.settings.admin_key
                    before = model_statistics(server.http_url, key)
                    raw = run_perf_analyzer(
                        perf_analyzer,
                        server.http_url,
                        "ensemble",
                        data / "ensemble.json",
                        level,
                        work / f"ensemble-{label}-c{level}.csv",
                        args.request_count,
                        args.max_trials,
                        args.stability,
                        log_path=log,
                        admin_key=key,
                    )
                    row = to_perf_row(raw, "ensemble", label, args.variant)
                    row.server_breakdown = breakdown(before, model_statistics(server.http_url, key))
                    rows.append(row)
                    print(
                        f"   ensemble {label} c={level}: {row.throughput:.3f} img/s, "
                        f"p50 {row.p50_ms:.0f} ms",
                        flush=True,
                    )
                # preprocess' input is the ensemble's (image_bytes); the others' were
                # written by benchmarks.components from the same photos.
                for model, file in (
                    ("preprocess", "ensemble.json"),
                    ("detector", "detector.json"),
                    ("postprocess", "postprocess.json"),
                ):
                    # pre/post take milliseconds: count more requests per window to be stable
                    count = args.request_count if model == "detector" else 16 * args.request_count
                    for level in levels(args.composing_concurrency):
                        raw = run_perf_analyzer(
                            perf_analyzer,
                            server.http_url,
                            model,
                            data / file,
                            level,
                            work / f"{model}-{label}-c{level}.csv",
                            count,
                            args.max_trials,
                            args.stability,
                            log_path=log,
                            admin_key=server.settings.admin_key,
                        )
                        rows.append(to_perf_row(raw, model, label, args.variant))
                response_bytes[label] = {
                    fmt: response_size(server.http_url, photos[label][0].read_bytes(), fmt)
                    for fmt in ("none", "rle", "dense")
                }
    loaded = [total for _, total, _ in sampler.samples]
    summary = {
        "variant": args.variant,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "cpu_flags": cpu_flags(),
        "command": "python -m benchmarks.run "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "model": {key: info[key] for key in ("config", "weights", "score_thresh_test")}
        | {"precision": info.get("precision", "f32")},
        "settings": settings_of(repository, args),
        "components": components,
        "eager": eager,
        "response_bytes": response_bytes,
        "memory": {
            "rest_total": rest_total,
            "rest_by_process": rest_by_process,
            "load_mean": statistics.mean(loaded) if loaded else 0,
            "load_peak": max(loaded, default=0),
            "samples": [(round(t, 1), total) for t, total, _ in sampler.samples],
        },
        "rows": [row.__dict__ for row in rows],
    }
    summary["against_eager"] = report.against_eager(summary, rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    report.write_csv(rows, out / "results.csv")
    report.plot(rows, out / "plot.png")
    (out / "report.md").write_text(report.markdown(summary, rows))
    print(f"wrote {out / 'report.md'}, results.csv, summary.json, plot.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
