"""The front: nginx between the clients and tritonserver, so nothing untrusted reaches Triton.

Triton 2.51's HTTP front crashes on a chunked body of many tiny chunks (CVE-2025-23310/23311,
fixed in 25.07; the registries have no newer server binary), and copies any body, however
large, into shared memory before a model can refuse it.  So tritonserver listens on loopback
only, on ports of its own, and nginx (Debian's package, configured here) listens where
clients connect, on the public HTTP, gRPC and metrics ports:

* it reads every request body itself (chunked or not) and hands Triton only complete bodies
  with a ``Content-Length``, up to a size limit (413 above it);
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
from d2_triton.errors import ServerEnvironmentError
from d2_triton.model_config import PreprocessParameters
from d2_triton.schema import ADMITTED_PER_INSTANCE, RETRY_AFTER_S, ROLES, PipelineNames

# A KServe v2 JSON body spells each image byte as up to four characters ("255,").
JSON_BYTES_PER_IMAGE_BYTE = 4
# Room for the request's JSON header, parameters and framing, above the image itself.
BODY_OVERHEAD_BYTES = 1 << 20
# Bodies of every other call (health, metadata, config, logging, ...): small JSON.
OTHER_BODY_BYTES = 1 << 20
# The gRPC inference call (its model name is inside the message, out of nginx's sight).
GRPC_INFER = "~^/inference\\.GRPCInferenceService/ModelInfer$"
NGINX = "nginx"
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
        prefix = "" if self.pipeline.model(ROLES[0]) == ROLES[0] else f"{self.pipeline.name}_"
        return f"^/v2/models/{prefix}({roles})(/versions/[0-9]+)?/infer$"


def _read_config(path: Path) -> model_config_pb2.ModelConfig:
    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except (OSError, text_format.ParseError) as error:
        raise ServerEnvironmentError(f"cannot read {path}: {error}") from None


def admission_limit(repository: Path, pipeline: PipelineNames) -> int:
    """The default admission limit: ``schema.ADMITTED_PER_INSTANCE`` per detector instance."""
    config = _read_config(repository / pipeline.detector / "config.pbtxt")
    instances = sum(group.count or 1 for group in config.instance_group) or 1
    return ADMITTED_PER_INSTANCE * instances


def body_limit(repository: Path, pipeline: PipelineNames) -> int:
    """The largest infer body: preprocess's ``max_image_bytes`` as JSON, plus overhead."""
    config = _read_config(repository / pipeline.preprocess / "config.pbtxt")
    values = {key: value.string_value for key, value in config.parameters.items()}
    limits = model_config.from_parameters(PreprocessParameters, values)
    return JSON_BYTES_PER_IMAGE_BYTE * limits.max_image_bytes + BODY_OVERHEAD_BYTES


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
    """Where the front listens (``host``, public ports) and where Triton does (loopback)."""

    host: str
    http: int
    grpc: int
    metrics: int
    triton_http: int
    triton_grpc: int
    triton_metrics: int


def _json_error(status: int, message: str) -> str:
    return (
        f"location @status{status} {{ default_type application/json; "
        f'return {status} \'{{"error":"{message}"}}\'; }}'
    )


OWN_ERRORS = {
    400: "bad request",
    408: "request body not received in time",
    413: "request body too large",
    500: "internal error of the front",
    502: "the model server is not reachable",
    503: "overloaded: too many requests in flight for this model, retry later",
    504: "the model server did not answer in time",
}


def render_config(ports: FrontPorts, limits: list[PipelineLimits], prefix: Path) -> str:
    """nginx.conf for the front (``prefix``: its pid file and temp folders)."""
    maps, zones, infer_limits = [], [], []
    for item in limits:
        maps.append(f'map $uri ${item.zone} {{ ~{item.uri_pattern} 1; default ""; }}')
        zones.append(f"limit_conn_zone ${item.zone} zone={item.zone}:64k;")
        infer_limits.append(f"limit_conn {item.zone} {item.max_in_flight};")
    grpc_limit = sum(item.max_in_flight for item in limits) or ADMITTED_PER_INSTANCE
    body = max((item.max_body_bytes for item in limits), default=OTHER_BODY_BYTES)
    error_pages = " ".join(
        f"error_page {status} @status{status};" for status in OWN_ERRORS if status != 503
    )
    own_errors = "\n    ".join(_json_error(code, text) for code, text in OWN_ERRORS.items())
    temp = " ".join(f"{kind}_temp_path {prefix / kind};" for kind in TEMP_KINDS)
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    return f"""# Written by d2_triton.server.front at each start; edits are lost.
{user}
worker_processes 1;
pid {prefix / "nginx.pid"};
events {{ worker_connections 4096; }}
http {{
  server_tokens off;
  default_type application/json;
  access_log off;
  {temp}
  client_header_timeout 15s;
  client_body_timeout 30s;
  client_body_buffer_size 1m;
  client_max_body_size {OTHER_BODY_BYTES};
  large_client_header_buffers 4 16k;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_request_buffering on;
  proxy_max_temp_file_size 0;
  proxy_read_timeout 3600s;
  proxy_send_timeout 60s;
  limit_conn_status 503;
  limit_conn_log_level warn;
  {" ".join(maps)}
  {" ".join(zones)}
  map "{"".join("$" + item.zone for item in limits)}" $d2t_other {{ "" $uri; default ""; }}
  limit_conn_zone $d2t_other zone=d2t_other:64k;
  map $request_uri $d2t_grpc_infer {{ {GRPC_INFER} 1; default ""; }}
  limit_conn_zone $d2t_grpc_infer zone=d2t_grpc:64k;
  upstream triton_http {{ server 127.0.0.1:{ports.triton_http}; keepalive 64; }}
  upstream triton_grpc {{ server 127.0.0.1:{ports.triton_grpc}; keepalive 64; }}
  upstream triton_metrics {{ server 127.0.0.1:{ports.triton_metrics}; }}
  server {{
    listen {ports.host}:{ports.http};
    {error_pages}
    error_page 503 @overloaded;
    location / {{ proxy_pass http://triton_http; }}
    location ~ ^/v2/models/[^/]+(/versions/[^/]+)?/infer$ {{
      client_max_body_size {body};
      {" ".join(infer_limits)}
      limit_conn d2t_other {ADMITTED_PER_INSTANCE};
      proxy_pass http://triton_http;
    }}
    location @overloaded {{
      default_type application/json;
      add_header Retry-After {RETRY_AFTER_S} always;
      return 503 '{{"error":"{OWN_ERRORS[503]}"}}';
    }}
    {own_errors}
  }}
  server {{
    listen {ports.host}:{ports.grpc} http2;
    client_max_body_size {body};
    grpc_read_timeout 3600s;
    location / {{
      limit_conn d2t_grpc {grpc_limit};
      grpc_pass grpc://triton_grpc;
    }}
  }}
  server {{
    listen {ports.host}:{ports.metrics};
    {error_pages}
    location = /metrics {{ proxy_pass http://triton_metrics; }}
    location / {{ return 404 '{{"error":"only /metrics is served here"}}'; }}
    {own_errors}
  }}
}}
"""


def free_ports(count: int) -> list[int]:
    """TCP ports that were free on 127.0.0.1 a moment ago."""
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def nginx_binary() -> Path:
    """Debian's nginx; ServerEnvironmentError saying how to install it when missing."""
    found = shutil.which(NGINX) or (Path("/usr/sbin/nginx").is_file() and "/usr/sbin/nginx")
    if not found:
        raise ServerEnvironmentError(
            "nginx is not installed: the front needs it (apt-get install nginx; "
            "scripts/setup.sh does this), or start with --no-front on a trusted network"
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
            [str(self.binary), "-e", "stderr", "-p", str(self.prefix), "-c", str(config),
             "-g", "daemon off;"],
            stdout=stdout, stderr=subprocess.STDOUT if stdout else None, start_new_session=True,
        )  # fmt: skip
        return self

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Wait until the HTTP port accepts connections; RuntimeError if nginx exits."""
        deadline = time.monotonic() + timeout
        host = "127.0.0.1" if self.ports.host in ("0.0.0.0", "::") else self.ports.host
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the front (nginx) exited with code {self.process.returncode}")
            try:
                with socket.create_connection((host, self.ports.http), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"the front (nginx) does not listen after {timeout:.0f}s")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGQUIT (finish requests in flight), then SIGKILL after ``timeout``."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGQUIT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
