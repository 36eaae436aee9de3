"""A serving or exporting process runs OpenVINO and NNCF with their telemetry stubs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from d2_triton.cache import CHECKOUT
from helpers import pb_utils_stub

sys.modules.setdefault("triton_python_backend_utils", pb_utils_stub)

from d2_triton.model_config import DetectorParameters  # noqa: E402
from d2_triton.serving import backend  # noqa: E402

# Run in a process of its own: pytest's has imported OpenVINO already (and NNCF stubs its
# telemetry under pytest by itself).
CHECK = """
import torch
from d2_triton.serving.usage_telemetry import turn_off_openvino_telemetry
assert turn_off_openvino_telemetry()
import openvino
from nncf.telemetry import telemetry, wrapper
from openvino.tools.ovc import convert_impl
converted = openvino.convert_model(torch.nn.Conv2d(3, 4, 3), example_input=torch.zeros(1, 3, 8, 8))
nncf_stub = isinstance(telemetry, wrapper.NNCFTelemetryStub)  # a MagicMock, when a stub
print(convert_impl.tm.__name__, nncf_stub, len(converted.outputs))
assert turn_off_openvino_telemetry()  # again: still off
"""


def test_a_process_that_turned_it_off_converts_with_the_stubs():
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=CHECKOUT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["openvino.tools.ovc.telemetry_stub", "True", "1"]


def test_a_process_that_imported_it_already_is_told_so():
    code = (
        "import openvino_telemetry\n"
        "from d2_triton.serving.usage_telemetry import turn_off_openvino_telemetry\n"
        "print(turn_off_openvino_telemetry())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=CHECKOUT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["False"], result.stderr[-3000:]


def test_every_stub_turns_it_off_before_anything_else(monkeypatch):
    """Each model.py's initialize starts with backend.initialize, before OpenVINO's import."""
    calls = []
    monkeypatch.setattr(backend, "turn_off_openvino_telemetry", lambda: calls.append("off"))
    with pytest.raises(json.JSONDecodeError):
        backend.initialize({"model_config": "not a config"}, DetectorParameters)
    assert calls == ["off"]
