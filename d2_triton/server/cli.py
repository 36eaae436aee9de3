"""``python -m d2_triton.server``: run tritonserver in the foreground, with the watchdog.

    python -m d2_triton.server --model-repository models            # Ctrl-C stops

Clients connect to the front (nginx, ``d2_triton.server.front``) on ``--host`` and the
ports ``HTTP_PORT``, ``GRPC_PORT`` and ``METRICS_PORT`` from the environment, else 8000,
8001 and 8002; tritonserver itself listens on loopback only.  ``--no-front`` makes Triton
listen on those ports itself, for a trusted network only (docs/security.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from d2_triton import schema
from d2_triton.errors import ServerEnvironmentError
from d2_triton.server.environment import ServerEnvironment
from d2_triton.server.process import ServerOptions, TritonServer
from d2_triton.server.watchdog import log


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The launcher's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m d2_triton.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model-repository", type=Path, default=Path(os.environ.get("TRT_MODEL_DIR", "models"))
    )
    parser.add_argument(
        "--server-env",
        type=Path,
        default=Path(sys.prefix),
        help="Python environment the backend stubs use (default: this one)",
    )
    parser.add_argument(
        "--tritonserver",
        type=Path,
        help="an installed tritonserver (e.g. /opt/tritonserver/bin/tritonserver in NVIDIA's "
        "images) instead of nvidia-pytriton's",
    )
    parser.add_argument(
        "--host",
        default="0.0.0.0",
        help="the address clients connect to (the front's; Triton's own with --no-front)",
    )
    parser.add_argument(
        "--no-front",
        action="store_true",
        help="no nginx in front: Triton 2.51 itself listens on --host (trusted networks only)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        help="inference requests admitted per pipeline at once, the rest answered 503 "
        f"(default: {schema.ADMITTED_PER_INSTANCE} per detector instance)",
    )
    parser.add_argument(
        "--admin-key-file",
        type=Path,
        help="write the admin key (restricted APIs; $D2T_ADMIN_KEY, else new per start) "
        "here, mode 0600",
    )
    for protocol in ("http", "grpc", "metrics"):
        variable = f"{protocol.upper()}_PORT"
        parser.add_argument(
            f"--{protocol}-port",
            type=int,
            default=int(os.environ.get(variable, schema.DEFAULT_PORTS[protocol])),
            help=f"default: ${variable}, else {schema.DEFAULT_PORTS[protocol]}",
        )
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument(
        "--backend-config",
        action="append",
        default=[],
        help="passed to tritonserver, e.g. python,shm-default-byte-size=...",
    )
    parser.add_argument(
        "--no-watchdog",
        action="store_true",
        help="do not reload models whose stub died (keeps Triton's default model control)",
    )
    parser.add_argument(
        "extra", nargs=argparse.REMAINDER, help="further tritonserver arguments, after '--'"
    )
    args = parser.parse_args(argv)
    if args.max_in_flight is not None and args.max_in_flight < 1:
        parser.error("--max-in-flight must be at least 1")
    if not schema.PipelineNames.in_repository(args.model_repository):
        parser.error(
            f"{args.model_repository} has no exported model; run "
            f"python -m export_tools.export --repository {args.model_repository} first"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the server until it exits; returns its exit code."""
    args = parse_args(argv)
    options = ServerOptions(
        model_repository=args.model_repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        host=args.host,
        front=not args.no_front,
        max_in_flight=args.max_in_flight,
        admin_key_file=args.admin_key_file,
        log_verbose=args.log_verbose,
        backend_config=args.backend_config,
        extra_args=[item for item in args.extra if item != "--"],
        watchdog=not args.no_watchdog,
    )
    try:
        environment = ServerEnvironment.inspect(args.server_env, args.tritonserver)
        server = TritonServer(options, environment)
    except ServerEnvironmentError as error:
        print(f"d2_triton.server: {error}", file=sys.stderr)
        return 2
    print("starting:", " ".join(server.command()).replace(options.admin_key, "***"), flush=True)
    if server.front is not None:
        limits = ", ".join(f"{i.pipeline.name}: {i.max_in_flight}" for i in server.front.limits)
        print(f"front (nginx) on {args.host}:{args.http_port} (HTTP), {args.grpc_port} (gRPC), "
              f"{args.metrics_port} (metrics); Triton on loopback {server.ports.triton_http}, "
              f"{server.ports.triton_grpc}, {server.ports.triton_metrics}; admitted per "
              f"pipeline: {limits}", flush=True)  # fmt: skip
    return serve_in_foreground(server)


def serve_in_foreground(server: TritonServer) -> int:
    """Run tritonserver until it exits; SIGTERM/SIGINT are passed on for a graceful stop.

    The launcher stays tritonserver's parent (rather than exec'ing it) to run the stub
    watchdog; under docker, use an init (``init: true``) so signals and orphans are handled.
    """
    stopping = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        if server.watchdog is not None:
            server.watchdog.request_stop()
        # nginx stops gracefully on SIGQUIT (SIGTERM would drop requests in flight).
        for process, sent in ((server.front_process, signal.SIGQUIT), (server.process, signum)):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, sent)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    server.start()
    try:
        server.wait_ready(timeout=None)
        if not stopping.is_set():
            server.start_watchdog()
            log("ready; the stub watchdog is on" if server.watchdog else "ready")
    except RuntimeError as error:  # exited before it was ready
        log(str(error))
    # Either process ending ends the server: the container's restart policy (or Kubernetes)
    # brings both back, rather than a Triton nobody can reach or a front to a dead Triton.
    while server.exited() is None:
        time.sleep(0.5)
    if stopping.is_set():
        return server.stop() or 0
    log(f"{server.exited()}; stopping the rest")
    return server.stop() or 1
