"""The environments the project relies on: Detectron2 shims, the server env, the stub."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from d2_triton.cache import CHECKOUT
from d2_triton.server import ServerEnvironment, ServerEnvironmentError, ServerSettings
from d2_triton.server.front import FrontPorts
from export_tools.detectron2_setup import shims
from helpers import pb_utils_stub
from helpers.servers import SERVER_ENV

REPO_ROOT = CHECKOUT


def test_detectron2_imports_with_only_the_documented_shims():
    shims.import_detectron2()
    from detectron2.export.flatten import TracingAdapter  # noqa: F401
    from detectron2.modeling import build_model  # noqa: F401

    in_use = shims.shims_in_use()
    assert all(s.startswith(("detectron2._C placeholder", "detectron2.export")) for s in in_use)
    if "detectron2._C" in sys.modules and isinstance(
        sys.modules["detectron2._C"], shims._MissingCppExtension
    ):
        with pytest.raises(shims.MissingCppExtensionError, match="C\\+\\+ extension"):
            sys.modules["detectron2._C"].deform_conv_forward  # noqa: B018
        with pytest.raises(AttributeError):
            sys.modules["detectron2._C"].__file__  # noqa: B018


def test_server_environment_has_numpy_below_2_and_a_stub():
    environment = ServerEnvironment.inspect(SERVER_ENV)
    assert int(environment.numpy_version.split(".")[0]) < 2
    assert environment.tritonserver.is_file()
    stub = environment.pytriton_dir / "tritonserver" / "python_backend_stubs"
    assert (stub / environment.python_version / "triton_python_backend_stub").is_file()


def test_numpy_2_server_environments_are_refused():
    environment = ServerEnvironment(Path("/nowhere"), "3.11", "2.1.3", Path("/nowhere"))
    with pytest.raises(ServerEnvironmentError, match="empty output tensors"):
        environment.check_numpy()


def pinned_versions(path: Path) -> dict[str, str]:
    """name -> version of every ``name==version`` line, following ``-r`` includes."""
    pins = {}
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            pins |= pinned_versions(path.parent / line.split(maxsplit=1)[1])
        match = re.match(r"^([A-Za-z0-9_.\-\[\],]+)==([^\s#]+)", line)
        if match:
            pins[match.group(1).split("[")[0].lower()] = match.group(2)
    return pins


def test_requirements_pin_numpy_below_2():
    server = pinned_versions(REPO_ROOT / "requirements.txt")
    assert int(server["numpy"].split(".")[0]) < 2
    for package in ("nvidia-pytriton", "tritonclient", "torch", "torchvision", "pycocotools"):
        assert package in server, f"{package} is not pinned"
    clients = pinned_versions(REPO_ROOT / "requirements-client.txt")
    assert "torch" not in clients and "nvidia-pytriton" not in clients  # the gateway image
    assert {"fastapi", "uvicorn", "tritonclient"} <= set(clients)


def test_server_command_line():
    options = ServerSettings(Path("repo"), http_port=1, grpc_port=2, metrics_port=3)
    environment = ServerEnvironment(Path("/env"), "3.11", "1.26.4", Path("/site/pytriton"))
    ports = FrontPorts("0.0.0.0", 1, 2, 3, 11, 12, 13, 14, 15)
    command = options.command(environment, Path("/backends"), ports)
    assert command[0] == "/site/pytriton/tritonserver/bin/tritonserver"
    # Behind the front, Triton listens on loopback only, on ports of its own.
    for flag in (
        "--http-port=11",
        "--grpc-port=12",
        "--metrics-port=13",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        "--backend-directory=/backends",
        "--disable-auto-complete-config",  # configs are whole: no extra stub per model load
    ):
        assert flag in command
    # The reload watchdog reloads models, so the model-repository API is on, behind a secret,
    # as is every other API but health, metadata, model config and inference.
    assert {"--model-control-mode=explicit", "--load-model=*"} <= set(command)
    key = options.admin_key
    assert len(key) >= 32 and key != ServerSettings(Path("repo")).admin_key
    apis = "model-repository,shared-memory,logging,trace,statistics"
    assert f"--http-restricted-api={apis}:d2t-admin-key={key}" in command
    assert f"--grpc-restricted-protocol={apis}:d2t-admin-key={key}" in command
    plain = ServerSettings(Path("repo"), watchdog=False).command(environment, Path("/b"), ports)
    assert not [arg for arg in plain if "model-control" in arg]
    assert len([arg for arg in plain if "restricted" in arg]) == 2  # restricted all the same
    # Without the front, Triton itself listens where clients connect (an explicit choice).
    exposed = ServerSettings(Path("repo"), 1, 2, 3, host="0.0.0.0", front=False)
    direct = exposed.command(environment, Path("/b"), exposed.ports())
    assert {"--http-address=0.0.0.0", "--http-port=1", "--grpc-port=2"} <= set(direct)
    env = environment.process_environment()
    assert env["PATH"].startswith("/env/bin")
    assert env["LD_LIBRARY_PATH"].startswith("/site/nvidia_pytriton.libs")


def test_the_admin_key_can_be_fixed_by_the_environment(monkeypatch):
    monkeypatch.setenv("D2T_ADMIN_KEY", "from-a-secret")
    assert ServerSettings(Path("repo")).admin_key == "from-a-secret"


def test_an_installed_tritonserver_runs_with_its_own_backends():
    """NVIDIA's Triton images (docker/Dockerfile.ngc): /opt/tritonserver/{bin,backends}."""
    binary = Path("/opt/tritonserver/bin/tritonserver")
    environment = ServerEnvironment(Path("/venv"), "3.10", "1.26.4", None, binary)
    backends = environment.prepare_backends(Path("/not/used"))
    assert backends == Path("/opt/tritonserver/backends")
    options = ServerSettings(Path("repo"))
    command = options.command(environment, backends, options.ports())
    assert command[0] == str(binary)
    assert "--backend-directory=/opt/tritonserver/backends" in command
    assert environment.process_environment()["PATH"].startswith("/venv/bin")
    assert "pytriton" not in environment.process_environment()["LD_LIBRARY_PATH"]


def test_pb_utils_stub_mirrors_the_real_modules_type_table():
    real = ServerEnvironment.inspect(SERVER_ENV).pytriton_dir / "tritonserver" / "backends"
    source = (real / "python" / "triton_python_backend_utils.py").read_text()
    table = next(
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "TRITON_STRING_TO_NUMPY" for t in node.targets)
    )
    real_names = {
        key.value: ast.unparse(value) for key, value in zip(table.keys, table.values, strict=True)
    }
    assert set(real_names) == set(pb_utils_stub.TRITON_STRING_TO_NUMPY)
    for name, expression in real_names.items():
        expected = getattr(np, expression[3:]) if expression.startswith("np.") else bool
        assert pb_utils_stub.triton_string_to_numpy(name) is expected


def test_server_code_does_not_import_detectron2():
    """The server runs with torch/torchvision only: no model.py or d2_triton import of it."""
    sources = list((REPO_ROOT / "models").rglob("model.py")) + list(
        (REPO_ROOT / "d2_triton").rglob("*.py")
    )
    for path in sources:
        tree = ast.parse(path.read_text())
        imported = [
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [name for name in imported if name.startswith("detectron2")], path


def test_detectron2_is_not_installed_in_the_server_environment():
    import subprocess

    probe = "import importlib.util as u; print(u.find_spec('detectron2') is None)"
    result = subprocess.run(
        [str(SERVER_ENV / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "True"
    assert importlib.util.find_spec("detectron2") is not None  # but the test env has it
