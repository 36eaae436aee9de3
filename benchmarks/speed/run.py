"""One command: baselines, the real server, perf_analyzer sweeps, report.

    .cache/venv-dev/bin/python -m benchmarks.speed.run --out benchmarks/results/cpu-2core

In one run, on the same photos (real, JPEG, at each --sizes):
1. in-process baselines in the server environment: bare TorchScript model, preprocess
   alone, postprocess alone (benchmarks/speed/components.py);
2. Detectron2's eager DefaultPredictor loop in the dev environment (benchmarks/speed/eager.py);
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
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import machine
from benchmarks.speed import inputs, report, sections
from benchmarks.speed.exports import (
    default_repository,
    settings_of,
    variant_repository,
    work_folder,
)
from benchmarks.speed.sweep import measure_served
from d2_triton.cache import CHECKOUT, server_env
from d2_triton.commands import Parser, command
from export_tools.repository.writer import read_export_info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's options."""
    parser = Parser(
        prog="python -m benchmarks.speed.run",
        description=__doc__,
    )
    parser.add_argument("--repository", type=Path, help="exported repository (default: export one)")
    parser.add_argument("--out", type=Path, default=CHECKOUT / "benchmarks" / "results" / "latest")
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


def in_process(repository: Path, work: Path, args: argparse.Namespace) -> dict:
    """The bare model, preprocess and postprocess alone, in the server environment."""
    print("== in-process baselines (server environment)", flush=True)
    command = [str(server_env() / "bin" / "python"), "-m", "benchmarks.speed.components"]
    command += ["--repository", str(repository), "--photos", str(work / "photos")]
    command += ["--out", str(work / "inputs"), "--repeats", str(args.repeats)]
    subprocess.run(command, cwd=CHECKOUT, check=True)
    return json.loads((work / "inputs" / "components.json").read_text())


def eager(repository: Path, work: Path, threads: int, args: argparse.Namespace) -> dict | None:
    """Detectron2's DefaultPredictor loop in the dev environment (or an earlier run's)."""
    if args.eager_json:
        return json.loads(args.eager_json.read_text())
    if args.no_eager:
        return None
    print("== Detectron2 eager DefaultPredictor (dev environment)", flush=True)
    command = [sys.executable, "-m", "benchmarks.speed.eager", "--repository", str(repository)]
    command += ["--photos", str(work / "photos"), "--out", str(work), "--threads", str(threads)]
    command += ["--repeats", str(max(1, args.repeats - 1))]
    subprocess.run(command, cwd=CHECKOUT, check=True)
    return json.loads((work / "eager.json").read_text())


@command("python -m benchmarks.speed.run")
def main(argv: list[str] | None = None) -> int:
    """Measure, then write the summary, the CSV, the report and the plot."""
    args = parse_args(argv)
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    work = work_folder(args.variant)
    source = (args.repository or default_repository()).absolute()
    repository = variant_repository(source, work / "repository", args)
    sizes = [inputs.parse_size(text) for text in args.sizes.split(",")]
    photos = inputs.write_photos(work / "photos", sizes, args.photos_per_size)
    info = read_export_info(repository)
    components = in_process(repository, work, args)
    eager_figures = eager(repository, work, components["threads"], args)
    for label, paths in photos.items():
        requests = [{"image_bytes": np.frombuffer(p.read_bytes(), np.uint8)} for p in paths]
        inputs.write_input_data(work / "inputs" / label / "ensemble.json", requests)
    print("== tritonserver + perf_analyzer", flush=True)
    served = measure_served(repository, photos, work, out, args)
    summary = {
        "variant": args.variant,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine.description(),
        "cpu_flags": machine.cpu_flags(),
        "cpu_class": machine.cpu_class(),
        "command": "python -m benchmarks.speed.run "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "model": {key: info[key] for key in ("config", "weights", "score_thresh_test")}
        | {"precision": info.get("precision", "f32")},
        "settings": settings_of(repository, args),
        "components": components,
        "eager": eager_figures,
        "response_bytes": served.response_bytes,
        "memory": served.memory,
        "rows": [row.__dict__ for row in served.rows],
    }
    summary["against_eager"] = sections.against_eager(summary, served.rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    report.write_csv(served.rows, out / "results.csv")
    report.plot(served.rows, out / "plot.png")
    (out / "report.md").write_text(report.markdown(summary, served.rows))
    print(f"wrote {out / 'report.md'}, results.csv, summary.json, plot.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
