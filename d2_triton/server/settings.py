"""How the launcher runs tritonserver: its settings, the admin key, the command line.

``ServerSettings`` is the launcher's typed settings, as ``GatewaySettings`` is the
gateway's and ``ExportSettings`` the exporter's.

Triton listens on loopback behind the front (``front``) on free ports of its own, with its
restricted APIs behind a per-start admin key, and with explicit model control when the
reload watchdog is on.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from d2_triton import names
from d2_triton.server.environment import ServerEnvironment
from d2_triton.server.front import FrontPorts
from d2_triton.server.ports import free_ports

# Triton's APIs that answer only with the admin key (HTTP header / gRPC metadata
# ``names.ADMIN_HEADER``): all but health, metadata, model config and inference.
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace", "statistics")
# A fixed admin key (e.g. from a Kubernetes Secret) instead of a new one per start.
ADMIN_KEY_VARIABLE = "D2T_ADMIN_KEY"
LOOPBACK = "127.0.0.1"


def _admin_key() -> str:
    return os.environ.get(ADMIN_KEY_VARIABLE) or secrets.token_hex(16)


@dataclass
class ServerSettings:
    """How to run tritonserver on a model repository.

    Attributes:
        model_repository: the folder the exporter wrote.
        http_port: the HTTP/REST port clients connect to.
        grpc_port: the gRPC port clients connect to.
        metrics_port: the Prometheus metrics port.
        host: the address clients connect to: the front's (``d2_triton.server.front``), or
            Triton's own when ``front`` is off.
        front: put nginx in front of Triton, which then listens on loopback only, on ports
            of its own.  Off: Triton listens on ``host`` itself (trusted networks only).
        max_in_flight: inference requests the front admits per pipeline at once (None:
            ``names.ADMITTED_PER_INSTANCE`` per detector instance).
        log_verbose: tritonserver's ``--log-verbose``.
        backend_config: ``--backend-config`` values, e.g. ``python,shm-default-byte-size=...``.
        extra_args: further tritonserver arguments, passed as they are.
        watchdog: reload a model whose stub died (see ``watchdog.ReloadWatchdog``); needs
            explicit model control, which this turns on.
        admin_key: the secret the restricted APIs (``RESTRICTED_APIS``) ask for: a new one
            per start unless ``$D2T_ADMIN_KEY`` sets it.
        admin_key_file: where to write ``admin_key`` (mode 0600) for the project's own tools.
    """

    model_repository: Path
    http_port: int = names.DEFAULT_PORTS["http"]
    grpc_port: int = names.DEFAULT_PORTS["grpc"]
    metrics_port: int = names.DEFAULT_PORTS["metrics"]
    host: str = "0.0.0.0"
    front: bool = True
    max_in_flight: int | None = None
    log_verbose: int = 0
    backend_config: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    watchdog: bool = True
    admin_key: str = field(default_factory=_admin_key, repr=False)
    admin_key_file: Path | None = None

    def ports(self) -> FrontPorts:
        """Where clients connect and where Triton listens (loopback ports behind a front)."""
        public = (self.http_port, self.grpc_port, self.metrics_port)
        if not self.front:
            return FrontPorts(self.host, *public, *public, 0, 0)
        return FrontPorts(self.host, *public, *free_ports(5))

    def command(
        self, environment: ServerEnvironment, backend_directory: Path, ports: FrontPorts
    ) -> list[str]:
        """The tritonserver command line."""
        address = LOOPBACK if self.front else self.host
        restricted = f"{','.join(RESTRICTED_APIS)}:{names.ADMIN_HEADER}={self.admin_key}"
        command = [
            str(environment.tritonserver),
            f"--model-repository={self.model_repository.absolute()}",
            f"--backend-directory={backend_directory}",
            f"--http-address={address}",
            f"--grpc-address={address}",
            f"--metrics-address={address}",
            f"--http-port={ports.triton_http}",
            f"--grpc-port={ports.triton_grpc}",
            f"--metrics-port={ports.triton_metrics}",
            f"--log-verbose={self.log_verbose}",
            "--exit-on-error=true",
            "--strict-readiness=true",
            # The exporter writes every config whole.  Auto-completion (on by default) has
            # the Python backend start one more stub per model load only to ask model.py
            # for a config, importing torch and OpenVINO each time: the several-pipelines
            # repository (12 models) was ready after 18 s (34 s of CPU) with it, 11 s
            # (22 s) without, on 2 cores of an AMD EPYC with AVX-512.
            "--disable-auto-complete-config",
            f"--http-restricted-api={restricted}",
            f"--grpc-restricted-protocol={restricted}",
        ]
        if self.watchdog:
            command += ["--model-control-mode=explicit", "--load-model=*"]
        command += [f"--backend-config={item}" for item in self.backend_config]
        return command + list(self.extra_args)
