"""The client installs like a Python package and works against the real server.

The wheel is built from the checkout's package files, installed with only its ``client``
extra into an empty virtual environment (no torch there), and its ``d2-triton`` command
asks the real tritonserver, as a user on another machine would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

from d2_triton.cache import CHECKOUT, cache_dir
from d2_triton.client import DetectionClient

# Hang catchers: here the build and the install (from pip's cache) took seconds.
BUILD_TIMEOUT_S = 300
INSTALL_TIMEOUT_S = 900


def run(*command, **options) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **options)
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
    return done


def test_the_wheel_with_the_client_extra_gives_a_working_cli(fast_server, photos, tmp_path):
    source = tmp_path / "source"  # what a wheel is built from, not the whole checkout
    shutil.copytree(
        CHECKOUT / "d2_triton", source / "d2_triton", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(CHECKOUT / name, source / name)
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
        source, timeout=BUILD_TIMEOUT_S)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("d2_triton-*.whl")
    with zipfile.ZipFile(wheel) as archive:  # the tests' helpers stay in the checkout
        assert not [n for n in archive.namelist() if n.startswith("d2_triton/testing/")]

    env = tmp_path / "env"
    run(sys.executable, "-m", "venv", "--without-pip", env)
    python = env / "bin" / "python"
    cache = {**os.environ, "PIP_CACHE_DIR": str(cache_dir() / "pip")}
    cache.pop("PYTHONPATH", None)
    run(*pip, "--python", python, "install", "-q", f"{wheel}[client]",
        env=cache, timeout=INSTALL_TIMEOUT_S)  # fmt: skip
    no_torch = "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('fastapi'))"
    assert run(python, "-c", no_torch, env=cache, cwd=tmp_path).stdout.split() == ["None", "None"]

    photo = photos["coffee.jpg"]
    printed = run(
        env / "bin" / "d2-triton", "infer", photo, "--url", fast_server.http_url, "--json",
        env=cache, cwd=tmp_path, timeout=120,
    ).stdout  # fmt: skip
    with DetectionClient(fast_server.http_url) as client:
        expected = client.detect(photo.read_bytes()).to_json()
    assert json.loads(printed) == {key: expected[key] for key in ("image_size", "detections")}
