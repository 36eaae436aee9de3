"""Overload: bursts of uploads at once, with admission (the front and the gateway) and without.

    python -m benchmarks.load.overload --repository REPO --out benchmarks/results/overload

Each burst sends N uploads of one 256x300 JPEG at the same moment and records every status;
then it waits until the detector's execution count settles, so work queued for clients that
were already told 504 is counted as wasted.  The baseline is the same burst without
admission (Triton without its front, the gateway with no in-flight limit), as the issue
measured it.  Writes summary.json, report.md and plot.png into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import requests

from benchmarks import machine
from d2_triton import names
from d2_triton.commands import Parser, command
from d2_triton.server import ServerEnvironment, TritonServer
from d2_triton.testing.burst import (
    Request,
    binary_infer_request,
    send_all,
    settled_executions,
    statuses,
)
from d2_triton.testing.gateway import SERVER_ENV, GatewayProcess
from d2_triton.testing.ports import loopback_server_settings

# The gateway's own default timeout towards Triton: what made clients see 504.
GATEWAY_TIMEOUT_S = 60.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command's options."""
    parser = Parser(prog="python -m benchmarks.load.overload", description=__doc__)
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/overload"))
    parser.add_argument("--bursts", default="100,200", help="burst sizes with admission")
    parser.add_argument("--baseline-burst", type=int, default=100)
    return parser.parse_args(argv)


def cpu() -> dict[str, object]:
    """The machine, its relevant CPU flags and its class, for the summary."""
    return {
        "machine": machine.description(),
        "flags": machine.listed_flags(),
        "class": machine.cpu_class(),
    }


def test_image() -> bytes:
    """A 256x300 JPEG of seeded noise: the burst's one image."""
    pixels = (np.random.RandomState(0).rand(300, 256, 3) * 255).astype(np.uint8)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


def run_burst(server: TritonServer, request: Request, count: int) -> dict[str, object]:
    """One burst: statuses, seconds, the detector's executions (during and settled)."""
    executions = partial(server.executions, names.DETECTOR_MODEL)
    before = executions()
    started = time.monotonic()
    answers = send_all(request, count)
    answered = time.monotonic() - started
    at_answers = executions() - before
    settled = settled_executions(executions) - before
    counts = statuses(answers)
    ok = [a.seconds for a in answers if a.status == 200]
    refused = [a.seconds for a in answers if a.status == 503]
    return {
        "burst": count,
        "statuses": {str(status): n for status, n in sorted(counts.items())},
        "burst_seconds": round(answered, 1),
        "goodput_per_s": round(len(ok) / max(ok), 3) if ok else 0.0,
        "detector_executions": settled,
        "executions_after_last_answer": settled - at_answers,
        "wasted_executions": max(0, settled - counts[200]),
        "ok_seconds_max": round(max(ok), 1) if ok else None,
        "refused_seconds_max": round(max(refused), 2) if refused else None,
        "retry_after": sorted({a.retry_after for a in answers if a.retry_after}),
    }


def scenario(server: TritonServer, log: Path, admission: bool, bursts: list[int]) -> dict:
    """Bursts through the gateway (and, with admission, through the front) on one server."""
    image = test_image()
    settings = {} if admission else {"MAX_IN_FLIGHT": "1000000"}
    results = {}
    with GatewayProcess(server.http_url, log, server.settings.admin_key, **settings) as gateway:
        detect = Request(f"{gateway.url}/v1/detect", image)
        warm = requests.post(detect.url, data=image, timeout=GATEWAY_TIMEOUT_S)
        assert warm.status_code == 200  # the first request pays for profiling
        for count in bursts:
            results[f"gateway-{count}"] = run_burst(server, detect, count)
            print(json.dumps({f"gateway-{count}": results[f"gateway-{count}"]}), flush=True)
    if admission:
        url = f"http://{server.http_url}/v2/models/ensemble/infer"
        infer = Request(url, *binary_infer_request(image))
        results[f"front-{bursts[0]}"] = run_burst(server, infer, bursts[0])
        print(json.dumps({f"front-{bursts[0]}": results[f"front-{bursts[0]}"]}), flush=True)
    return results


def write_report(summary: dict, out: Path) -> None:
    """report.md and plot.png beside summary.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        (mode, name, figures)
        for mode in ("admission", "baseline")
        for name, figures in summary[mode].items()
    ]
    lines = [
        "# Overload: bursts of uploads at once",
        "",
        f"Machine: {summary['cpu']['machine']}; flags {', '.join(summary['cpu']['flags'])}.",
        f"Command: `{summary['command']}`; {summary['when']}.",
        "",
        "| mode | via, burst | statuses | goodput (img/s) | detector runs | wasted runs | "
        "slowest 200 (s) | slowest 503 (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, name, f in rows:
        lines.append(
            f"| {mode} | {name} | {f['statuses']} | {f['goodput_per_s']} | "
            f"{f['detector_executions']} | {f['wasted_executions']} | {f['ok_seconds_max']} | "
            f"{f['refused_seconds_max']} |"
        )
    lines += ["", summary["reading"], ""]
    (out / "report.md").write_text("\n".join(lines))
    figure, axis = plt.subplots(figsize=(9, 4))
    labels = [f"{mode}\n{name}" for mode, name, _ in rows]
    bottom = np.zeros(len(rows))
    for status, colour in (("200", "tab:green"), ("503", "tab:orange"), ("504", "tab:red")):
        values = np.array([f["statuses"].get(status, 0) for _, _, f in rows])
        axis.bar(labels, values, bottom=bottom, label=status, color=colour)
        bottom += values
    wasted = [f["wasted_executions"] for _, _, f in rows]
    axis.plot(labels, wasted, "kx", markersize=10, label="detector runs wasted")
    axis.set_ylabel("requests")
    axis.legend()
    axis.set_title("Bursts of uploads at once: answers by status")
    figure.tight_layout()
    figure.savefig(out / "plot.png", dpi=110)


@command("python -m benchmarks.load.overload")
def main(argv: list[str] | None = None) -> int:
    """Measure bursts with and without admission, then write the report."""
    args = parse_args(argv)
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    environment = ServerEnvironment.inspect(SERVER_ENV)
    bursts = [int(item) for item in args.bursts.split(",")]
    command = "python -m benchmarks.load.overload " + " ".join(argv or sys.argv[1:])
    summary = {"cpu": cpu(), "when": time.strftime("%Y-%m-%d %H:%M"), "command": command}
    for mode, front in (("admission", True), ("baseline", False)):
        server_settings = loopback_server_settings(args.repository.absolute(), front=front)
        with TritonServer(
            server_settings, environment, log_path=out / f"tritonserver-{mode}.log"
        ) as server:
            chosen = bursts if front else [args.baseline_burst]
            summary[mode] = scenario(server, out / f"gateway-{mode}.log", front, chosen)
    base = summary["baseline"][f"gateway-{args.baseline_burst}"]
    ours = summary["admission"][f"gateway-{args.baseline_burst}"]
    summary["goodput_ratio_vs_baseline"] = round(
        ours["goodput_per_s"] / max(base["goodput_per_s"], 1e-9), 2
    )
    summary["reading"] = (
        f"Without admission, {base['statuses'].get('504', 0)} of {base['burst']} uploads timed "
        f"out and the detector ran {base['wasted_executions']} images nobody got; with it, "
        f"{ours['statuses'].get('503', 0)} were refused at once (503, Retry-After) and "
        f"{ours['wasted_executions']} runs were wasted. Goodput ratio (admission / baseline): "
        f"{summary['goodput_ratio_vs_baseline']}."
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_report(summary, out)
    print(summary["reading"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
