"""scripts/export_default.sh, the export step of every deployment: it fails closed.

Docker, compose and Kubernetes run it with no ``D2T_ALLOW_RANDOM_WEIGHTS``: weights that
cannot be had end the export with one line saying what to do, and nothing is written (a
replica must never serve a random model beside real ones).  A repository that holds an
export is kept, and the script says so when other weights were asked for.
"""

from __future__ import annotations

import os
import subprocess

from d2_triton.testing.ports import free_ports
from helpers.exports import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "export_default.sh"


def run(models, **variables: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("D2T_ALLOW")}
    environment |= {"TRT_MODEL_DIR": str(models), **variables}
    return subprocess.run(
        [str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=300
    )


def test_weights_that_cannot_be_had_end_the_export_and_write_nothing(tmp_path):
    nowhere = f"http://127.0.0.1:{free_ports(1)[0]}/model_final.pkl"  # nothing listens
    models = tmp_path / "models"
    done = run(models, D2T_WEIGHTS=nowhere)
    assert done.returncode != 0
    assert f"could not load weights {nowhere}" in done.stderr
    assert "set D2T_ALLOW_RANDOM_WEIGHTS=1" in done.stderr.splitlines()[-1]
    assert not models.exists()


def test_an_existing_export_is_kept_and_the_script_says_so(tmp_path):
    models = tmp_path / "models"
    (models / "ensemble").mkdir(parents=True)
    (models / "ensemble" / "config.pbtxt").write_text('name: "ensemble"\n')
    done = run(models, D2T_WEIGHTS="/data/model_final.pkl")
    assert done.returncode == 0
    assert "keeping it" in done.stderr and "To replace it, remove that folder" in done.stderr
    quiet = run(models)
    assert quiet.returncode == 0 and "keeping it" not in quiet.stderr
