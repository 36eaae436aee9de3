"""An exporting process runs OpenVINO's conversion and NNCF with their telemetry stubs."""

from __future__ import annotations

import subprocess
import sys

from helpers.exports import REPO_ROOT

# Run in a process of its own: pytest's has imported OpenVINO already (and NNCF stubs its
# telemetry under pytest by itself).
CHECK = """
import torch
from export_tools.usage_telemetry import turn_off_openvino_telemetry
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
        [sys.executable, "-c", CHECK], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["openvino.tools.ovc.telemetry_stub", "True", "1"]


def test_a_process_that_imported_it_already_is_told_so():
    code = (
        "import openvino_telemetry\n"
        "from export_tools.usage_telemetry import turn_off_openvino_telemetry\n"
        "print(turn_off_openvino_telemetry())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["False"], result.stderr[-3000:]
