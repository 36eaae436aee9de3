"""The container images, built and run for real (opt-in: ``pytest -m docker``; ~15 minutes).

Builds the exporter, model-server and gateway images (on a locally built base where no
registry is reachable), then, as an operator would:

1. the exporter refuses weights it cannot have (no opt-in: one line, nothing written);
2. with ``D2T_ALLOW_RANDOM_WEIGHTS=1`` (this machine cannot reach the model zoo: the test
   opts in, and checks that everyone is told) it exports into a volume, timed;
3. the model server starts on that volume mounted read-only, timed to ready, and answers;
4. compose runs two model-server replicas on one exported volume behind the gateway, whose
   ``/v1/models`` says the weights are random; under load, version 2 is exported into the
   shared volume, both replicas serve it within the watcher's seconds, and taking it out
   rolls both back: no request fails.

The start times go to ``.cache/reports/docker-starts.json`` (docs/deployment.md has them).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
import requests

from d2_triton.cache import cache_dir
from d2_triton.client import DetectionClient
from d2_triton.testing.ports import free_ports
from helpers.exports import REPO_ROOT
from helpers.workers import Workers

pytestmark = pytest.mark.docker

DOCKER = REPO_ROOT / "docker"
# Hang catchers: a build takes minutes (torch is ~5.5 GB), an export ~1-2, a start seconds.
BUILD_TIMEOUT_S = 3600
RUN_TIMEOUT_S = 1200
PHOTO = "coffee.jpg"
CLIENTS = 3


def run(*command: str, check: bool = True, **options) -> subprocess.CompletedProcess:
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=options.pop("timeout", RUN_TIMEOUT_S),
        **options,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)}: {done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done


def compose_command() -> list[str]:
    if run("docker", "compose", "version", check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("needs docker compose (or docker-compose v1)")


@pytest.fixture(scope="module")
def images():
    """Builds the three images; the base image locally where no registry answers."""
    if shutil.which("docker") is None or run("docker", "info", check=False).returncode:
        pytest.fail("needs a running Docker engine (apt-get install docker.io; dockerd &)")
    base = "python:3.11-slim-bookworm"
    if (
        run("docker", "image", "inspect", base, check=False).returncode
        and run("timeout", "60", "docker", "pull", "-q", base, check=False).returncode
    ):
        base = "d2-triton/bookworm-python3.11"
        run(str(DOCKER / "build_base_image.sh"), base, timeout=BUILD_TIMEOUT_S)
    environment = {**os.environ, "BASE_IMAGE": base}
    started = time.monotonic()
    run(
        *compose_command(),
        "-f",
        str(DOCKER / "docker-compose.yml"),
        "build",
        env=environment,
        timeout=BUILD_TIMEOUT_S,
    )
    sizes = {
        image: int(run("docker", "image", "inspect", "-f", "{{.Size}}", image).stdout) >> 20
        for image in ("d2-triton/exporter", "d2-triton/model-server", "d2-triton/gateway")
    }
    print(f"built in {time.monotonic() - started:.0f} s; MiB: {sizes}")
    return {"base": base, "sizes_mib": sizes}


@pytest.fixture
def volume():
    name = f"d2t-test-{os.getpid()}-{time.monotonic_ns()}"
    run("docker", "volume", "create", name)
    yield name
    run("docker", "volume", "rm", "-f", name, check=False)


def export(volume: str, *arguments: str, **variables: str) -> subprocess.CompletedProcess:
    settings = [item for key, value in variables.items() for item in ("-e", f"{key}={value}")]
    return run(
        "docker",
        "run",
        "--rm",
        "-v",
        f"{volume}:/models",
        *settings,
        "d2-triton/exporter",
        *arguments,
        check=False,
    )


def wait_healthy(container: str) -> float:
    started = time.monotonic()
    deadline = started + RUN_TIMEOUT_S
    while (
        run("docker", "inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
        != "healthy"
    ):
        state = run("docker", "inspect", "-f", "{{.State.Running}}", container).stdout.strip()
        assert state == "true", run("docker", "logs", "--tail", "60", container, check=False).stderr
        assert time.monotonic() < deadline, f"{container} not healthy"
        time.sleep(1)
    return time.monotonic() - started


def test_the_exporter_refuses_weights_it_cannot_have_and_writes_nothing(images, volume):
    nowhere = "http://127.0.0.1:9/model_final.pkl"
    refused = export(volume, D2T_WEIGHTS=nowhere)
    assert refused.returncode != 0
    assert "set D2T_ALLOW_RANDOM_WEIGHTS=1" in refused.stderr.strip().splitlines()[-1]
    listing = run(
        "docker",
        "run",
        "--rm",
        "-v",
        f"{volume}:/models",
        "--entrypoint",
        "ls",
        "d2-triton/exporter",
        "-A",
        "/models",
    ).stdout.split()
    assert listing == [], listing


def test_export_once_then_a_server_on_the_mounted_repository(images, volume, photos):
    started = time.monotonic()
    done = export(volume, D2T_WEIGHTS="zoo", D2T_ALLOW_RANDOM_WEIGHTS="1")
    export_s = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    port = free_ports(1)[0]
    name = f"d2t-test-server-{os.getpid()}"
    run(
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--init",
        "--shm-size",
        "1g",
        "-p",
        f"{port}:8000",
        "-v",
        f"{volume}:/models:ro",
        "d2-triton/model-server",
    )
    try:
        mounted_s = seconds_to_ready(port, started=time.monotonic() - container_started(name))
        wait_healthy(name)
        with DetectionClient(f"127.0.0.1:{port}") as client:
            answer = client.detect(photos[PHOTO].read_bytes())
        assert len(answer) > 0 and all(answer.labels) and answer.masks_rle
        logs = run("docker", "logs", name)
        assert "EXPORTED WITH RANDOM WEIGHTS" in logs.stdout + logs.stderr
    finally:
        run("docker", "rm", "-f", name, check=False)
    starts = {
        "machine": run("sh", "-c", "grep -m1 'model name' /proc/cpuinfo").stdout.strip(),
        "export_s": round(export_s, 1),
        "repository_mounted_s": round(mounted_s, 1),
        "export_at_start_s": round(export_s + mounted_s, 1),
        "images_mib": images["sizes_mib"],
    }
    print(json.dumps(starts))
    (cache_dir() / "reports").mkdir(parents=True, exist_ok=True)
    (cache_dir() / "reports" / "docker-starts.json").write_text(json.dumps(starts, indent=2))


def container_started(name: str) -> float:
    """Seconds since the container started (Docker's clock against this machine's)."""
    text = run("docker", "inspect", "-f", "{{.State.StartedAt}}", name).stdout.strip()
    started = datetime.datetime.fromisoformat(text.replace("Z", "+00:00")[:26] + "+00:00")
    return (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()


def seconds_to_ready(port: int, started: float) -> float:
    """Seconds from ``started`` (monotonic) until the front answers ready, asked twice a second."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the model server never answered ready")


class Load:
    """Clients sending the photo to the gateway without pause; every answer recorded."""

    def __init__(self, url: str, image: bytes):
        self.url, self.image = url, image
        self.statuses: list[int] = []
        self.workers = Workers([self.client] * CLIENTS, join_timeout=180)
        self.stop = self.workers.stop

    def client(self) -> None:
        while not self.stop.is_set():
            try:
                answer = requests.post(f"{self.url}/v1/detect", data=self.image, timeout=120)
                self.statuses.append(answer.status_code)
            except requests.RequestException:
                self.statuses.append(0)

    def __enter__(self) -> Load:
        self.workers.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.workers.__exit__(*exc_info)


def free_pair() -> int:
    """A free port whose next one is free too: a range compose can share out to two replicas."""
    for port in free_ports(50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def serving_version(port: int) -> str | None:
    """The detector version a replica serves (latest 1: only one is ready)."""
    for version in ("2", "1"):
        url = f"http://127.0.0.1:{port}/v2/models/detector/versions/{version}/ready"
        try:
            with urllib.request.urlopen(url, timeout=5):
                return version
        except OSError:
            continue
    return None


def test_two_replicas_on_one_volume_roll_a_version_out_and_back_under_load(images, photos):
    project = f"d2t-test-{os.getpid()}"
    gateway_port = free_ports(1)[0]
    environment = {
        **os.environ,
        "BASE_IMAGE": images["base"],
        "D2T_ALLOW_RANDOM_WEIGHTS": "1",  # no route to the model zoo here: opted in, told below
        "D2T_ADMIN_KEY": "replicas-share-this-key",
        "GATEWAY_PORT": str(gateway_port),
    }
    for variable in ("TRITON_HTTP_PORTS", "TRITON_GRPC_PORTS", "TRITON_METRICS_PORTS"):
        first = free_pair()  # a range: compose gives each replica one of its ports
        environment[variable] = f"{first}-{first + 1}"
    compose = [*compose_command(), "-p", project, "-f", str(DOCKER / "docker-compose.yml")]
    try:
        run(*compose, "up", "-d", "--scale", "triton-model-server=2", env=environment)
        servers = run(*compose, "ps", "-q", "triton-model-server", env=environment).stdout.split()
        assert len(servers) == 2
        for container in servers:
            wait_healthy(container)
        gateway = run(*compose, "ps", "-q", "triton-client-server", env=environment).stdout.strip()
        wait_healthy(gateway)
        ports = [
            int(run("docker", "port", container, "8000").stdout.split(":")[-1].split()[0])
            for container in servers
        ]
        url = f"http://127.0.0.1:{gateway_port}"
        listing = requests.get(f"{url}/v1/models", timeout=60).json()
        assert [model["weights"] for model in listing["models"]] == ["random"]
        assert [serving_version(port) for port in ports] == ["1", "1"]
        image = photos[PHOTO].read_bytes()
        through_gateway = requests.post(f"{url}/v1/detect", data=image, timeout=120).json()
        with DetectionClient(f"127.0.0.1:{ports[0]}") as client:
            direct = client.detect(image).to_json()
        assert through_gateway["detections"] == direct["detections"], "gateway and Triton differ"
        with Load(url, photos[PHOTO].read_bytes()) as load:
            rolled = roll(compose, environment, ports, load)
        print(json.dumps(rolled | {"requests": len(load.statuses)}))
        assert load.statuses and set(load.statuses) == {200}, sorted(set(load.statuses))
    finally:
        logs = run(*compose, "logs", "--tail", "40", env=environment, check=False).stdout
        run(*compose, "down", "--volumes", "--remove-orphans", env=environment, check=False)
        print(logs[-4000:])


def roll(compose: list[str], environment: dict, ports: list[int], load: Load) -> dict:
    """Version 2 out to both replicas and back, under load; seconds each step took."""
    time.sleep(5)  # some answers from version 1 first
    started = time.monotonic()
    run(
        *compose,
        "run",
        "--rm",
        "-e",
        "D2T_EXPORT_OPTIONS=--seed 1",
        "export",
        "--new-version",
        env=environment,
    )
    exported = time.monotonic()
    until(lambda: [serving_version(port) for port in ports] == ["2", "2"], "both on version 2")
    out = time.monotonic()
    run(
        *compose,
        "run",
        "--rm",
        "--entrypoint",
        "rm",
        "export",
        "-r",
        "/models/detector/2",
        env=environment,
    )
    removed = time.monotonic()
    until(lambda: [serving_version(port) for port in ports] == ["1", "1"], "both back on 1")
    time.sleep(5)  # some answers from version 1 again
    return {
        "export_s": round(exported - started, 1),
        "both_on_2_after_export_s": round(out - exported, 1),
        "both_on_1_after_removal_s": round(time.monotonic() - removed - 5, 1),
        "requests_so_far": len(load.statuses),
    }


def until(condition, what: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"not {what}"
        time.sleep(0.5)
