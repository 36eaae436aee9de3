"""The front: nginx between the clients and tritonserver, so nothing untrusted reaches Triton.

Triton 2.51's HTTP front crashes on a chunked body of many tiny chunks (CVE-2025-23310/23311,
fixed in 25.07; the registries have no newer server binary), and copies any body, however
large, into shared memory before a model can refuse it.  So tritonserver listens on loopback
only, on ports of its own, and nginx (Debian's package, configured here) listens where
clients connect, on the public HTTP, gRPC and metrics ports:

* it reads every request body itself (chunked or not) and hands Triton only complete bodies
  with a ``Content-Length``, up to a size limit (413 above it);
* ``front.js`` (nginx's JavaScript module) checks each HTTP inference request first: Triton
  2.51 allocates a JSON input by its declared shape, so a 96-byte body declaring 2**40
  elements ends it (std::bad_alloc);
* it admits a bounded number of inference requests per pipeline at a time and answers the
  rest at once with 503 and ``Retry-After``, instead of queueing work whose clients will
  have given up by the time it runs (:func:`admission_limit`);
* its own refusals are short JSON bodies in Triton's shape (``{"error": ...}``) naming no
  version, file or region; Triton's answers pass through unchanged.

gRPC (h2c) goes through the same front; Triton reads the model name of a gRPC call from the
message, which nginx cannot see, so gRPC inference shares one admission limit: the sum of
the pipelines' limits.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from d2_triton import model_config
from d2_triton.errors import ModelConfigError, ProcessExitedError, ServerEnvironmentError
from d2_triton.model_config import PreprocessParameters
from d2_triton.names import (
    ADMITTED_PER_INSTANCE,
    DEFAULT_PIPELINE,
    RETRY_AFTER_S,
    ROLES,
    PipelineNames,
)
from d2_triton.server.processes import stop_process

# Room for the request's JSON header, parameters and framing, above the image itself.
BODY_OVERHEAD_BYTES = 1 << 20
# The largest JSON request header front.js parses (all of a request without the binary
# tensor extension): an image of up to ~4 MiB written as JSON numbers.  Larger images go as
# binary tensors (``Inference-Header-Content-Length``), as tritonclient sends them.
JSON_HEADER_BYTES = 16 << 20
# nginx's JavaScript module (Debian's libnginx-mod-http-js), which runs front.js.
NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")
# Bodies of every other call (health, metadata, config, logging, ...): small JSON.
OTHER_BODY_BYTES = 1 << 20
NGINX = "nginx"
# The gRPC calls the front sends to the launcher's status endpoint instead of to Triton
# (d2_triton.server.status_grpc); gRPC's paths are /<service>/<method>.
GRPC_READINESS_CALLS = (
    "/inference.GRPCInferenceService/ServerReady",
    "/inference.GRPCInferenceService/ModelReady",
)
# nginx's temp folders (each must be writable by its workers, even those it never uses).
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True)
class PipelineLimits:
    """What the front admits for one pipeline.

    Attributes:
        pipeline: the pipeline's model names.
        max_in_flight: inference requests to its models admitted at once.
        max_body_bytes: largest inference request body accepted.
    """

    pipeline: PipelineNames
    max_in_flight: int
    max_body_bytes: int

    @property
    def zone(self) -> str:
        """The name of this pipeline's counter in nginx (pipeline names have no ``_``)."""
        return "d2t_" + self.pipeline.name.replace("-", "_")

    @property
    def uri_pattern(self) -> str:
        """The infer URIs of the pipeline's four models (any version)."""
        roles = "|".join(ROLES)
        prefix = "" if self.pipeline.name == DEFAULT_PIPELINE else f"{self.pipeline.name}_"
        return f"^/v2/models/{prefix}({roles})(/versions/[0-9]+)?/infer$"


def _read_config(path: Path) -> model_config_pb2.ModelConfig:
    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except (OSError, text_format.ParseError) as error:
        raise ServerEnvironmentError(f"cannot read {path}: {error}") from None


def admission_limit(repository: Path, pipeline: PipelineNames) -> int:
    """The default admission limit: ``names.ADMITTED_PER_INSTANCE`` per detector instance."""
    config = _read_config(repository / pipeline.detector / "config.pbtxt")
    instances = sum(group.count or 1 for group in config.instance_group) or 1
    return ADMITTED_PER_INSTANCE * instances


def body_limit(repository: Path, pipeline: PipelineNames) -> int:
    """The largest infer body: preprocess's ``max_image_bytes``, plus room for the header."""
    config = _read_config(repository / pipeline.preprocess / "config.pbtxt")
    values = {key: value.string_value for key, value in config.parameters.items()}
    try:
        limits = model_config.from_parameters(PreprocessParameters, values)
    except ModelConfigError as error:
        raise ServerEnvironmentError(f"{pipeline.preprocess}: {error}") from None
    return limits.max_image_bytes + BODY_OVERHEAD_BYTES


def pipeline_limits(repository: Path, max_in_flight: int | None = None) -> list[PipelineLimits]:
    """Each pipeline's limits; ``max_in_flight`` overrides the derived admission limit."""
    return [
        PipelineLimits(
            pipeline,
            max_in_flight or admission_limit(repository, pipeline),
            body_limit(repository, pipeline),
        )
        for pipeline in PipelineNames.in_repository(repository)
    ]


@dataclass(frozen=True)
class FrontPorts:
    """Where the front listens, and where Triton and the status endpoint do behind it.

    ``host`` and the public ports are the front's; the others are on loopback: Triton's own
    three and the launcher's status endpoint, HTTP and gRPC (``d2_triton.server.status``;
    0: no front).
    """

    host: str
    http: int
    grpc: int
    metrics: int
    triton_http: int
    triton_grpc: int
    triton_metrics: int
    status: int
    status_grpc: int


OWN_ERRORS = {
    400: "bad request",
    408: "request body not received in time",
    413: "request body too large",
    500: "internal error of the front",
    502: "the model server is not reachable",
    504: "the model server did not answer in time",
}


def _error_pages() -> str:
    """The front's own error answers as short JSON (nginx's are HTML naming nginx)."""
    lines = []
    for status, message in OWN_ERRORS.items():
        lines.append(f"    error_page {status} @status{status};")
        lines.append(
            f'    location @status{status} {{ return {status} \'{{"error":"{message}"}}\'; }}'
        )
    return "\n".join(lines)


def render_config(ports: FrontPorts, limits: list[PipelineLimits], prefix: Path) -> str:
    """nginx.conf for the front (``prefix``: its pid file and temp folders)."""
    zones = [
        f'  map $uri ${item.zone} {{ ~{item.uri_pattern} 1; default ""; }}\n'
        f"  limit_conn_zone ${item.zone} zone={item.zone}:64k;"
        for item in limits
    ]
    values = {
        "user": "user nobody nogroup;" if os.geteuid() == 0 else "",
        "njs_module": NJS_MODULE,
        "prefix": prefix,
        "script": Path(__file__).with_name("front.js"),
        "other_body_bytes": OTHER_BODY_BYTES,
        "pipeline_zones": "\n".join(zones),
        "pipeline_keys": "".join(f"${item.zone}" for item in limits),
        "infer_limits": "\n".join(
            f"      limit_conn {item.zone} {item.max_in_flight};" for item in limits
        ),
        "other_limit": ADMITTED_PER_INSTANCE,
        "grpc_limit": sum(item.max_in_flight for item in limits) or ADMITTED_PER_INSTANCE,
        "infer_body_bytes": max((item.max_body_bytes for item in limits), default=OTHER_BODY_BYTES),
        "json_header_bytes": JSON_HEADER_BYTES,
        "retry_after": RETRY_AFTER_S,
        "error_pages": _error_pages(),
        "grpc_readiness": "\n".join(
            f"    location = {call} {{ grpc_pass grpc://d2t_status_grpc; }}"
            for call in GRPC_READINESS_CALLS
        ),
        **dataclasses.asdict(ports),
    }
    return Path(__file__).with_name("front.conf").read_text() % values


def nginx_binary() -> Path:
    """Debian's nginx; ServerEnvironmentError saying how to install it when missing."""
    found = shutil.which(NGINX) or (Path("/usr/sbin/nginx").is_file() and "/usr/sbin/nginx")
    if not found or not NJS_MODULE.is_file():
        raise ServerEnvironmentError(
            "the front needs nginx and its JavaScript module (apt-get install nginx "
            "libnginx-mod-http-js; scripts/setup.sh does this), or start with --no-front "
            "on a trusted network"
        )
    return Path(found)


class Front:
    """The nginx process of one server: writes its config, starts, waits, stops.

    Args:
        ports: where it and Triton listen.
        limits: each pipeline's admission and body limits.
    """

    def __init__(self, ports: FrontPorts, limits: list[PipelineLimits]):
        self.ports = ports
        self.limits = limits
        self.binary = nginx_binary()
        self.prefix: Path | None = None
        self.process: subprocess.Popen | None = None

    def write_config(self) -> Path:
        """A new folder with nginx.conf, the pid file and nginx's temp folders.

        Under /tmp, not the cache: when started as root, nginx's workers run as ``nobody``,
        who must reach the temp folders (request bodies are buffered there).
        """
        self.prefix = Path(tempfile.mkdtemp(prefix="d2t-front-"))
        self.prefix.chmod(0o711)  # the workers pass through; only its owner lists or writes
        for kind in TEMP_KINDS:
            (self.prefix / kind).mkdir(mode=0o700)
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.chown(self.prefix / kind, nobody.pw_uid, nobody.pw_gid)
        config = self.prefix / "nginx.conf"
        config.write_text(render_config(self.ports, self.limits, self.prefix))
        return config

    def start(self, stdout=None) -> Front:
        """Start nginx in the foreground of its own process group; does not wait."""
        config = self.write_config()
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "-e",
                "stderr",
                "-p",
                str(self.prefix),
                "-c",
                str(config),
                "-g",
                "daemon off;",
            ],
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout else None,
            start_new_session=True,
        )
        return self

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Wait until the HTTP port accepts connections; ProcessExitedError if nginx exits."""
        deadline = time.monotonic() + timeout
        host = "127.0.0.1" if self.ports.host in ("0.0.0.0", "::") else self.ports.host
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProcessExitedError(
                    f"the front (nginx) exited with code {self.process.returncode}"
                )
            try:
                with socket.create_connection((host, self.ports.http), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"the front (nginx) does not listen after {timeout:.0f}s")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGQUIT (finish requests in flight), then SIGKILL after ``timeout``."""
        if self.process is not None:
            stop_process(self.process, timeout, signal.SIGQUIT, group=True)
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
