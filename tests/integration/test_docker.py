"""The docker images, built and run for real (opt-in: ``pytest -m docker``; ~5-10 minutes).

docker/test_image.sh builds both images (on a locally built base where no registry is
reachable), starts the model server with the README's ``docker run`` line and then both
services with docker compose, sends a real JPEG to each Triton and to the gateway, checks
labelled detections and identical answers, and removes what it made.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from helpers.exports import REPO_ROOT

pytestmark = pytest.mark.docker


def test_images_build_start_and_answer_a_jpeg():
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True).returncode
    ):
        pytest.fail("needs a running Docker engine (apt-get install docker.io; dockerd &)")
    run = subprocess.run(
        [str(REPO_ROOT / "docker" / "test_image.sh")], capture_output=True, text=True, timeout=3600
    )
    print(run.stdout[-5000:], run.stderr[-5000:])
    assert run.returncode == 0, run.stderr[-5000:]
    assert "gateway answer == Triton answer" in run.stdout
    assert "docker run answer == compose answer" in run.stderr
