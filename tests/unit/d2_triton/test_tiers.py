"""The rules the folders state: the contract stands on the standard library alone, and the
client and the gateway run without torch.

The gateway image installs ``requirements-client.txt`` only; these tests import every module
of ``d2_triton.client`` and ``d2_triton.gateway`` (and the contract and ``vision`` they use)
in a fresh interpreter where torch, torchvision, OpenVINO, Detectron2 and Triton's stub
module cannot be imported, and fail on the first that reaches for one.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from d2_triton.cache import CHECKOUT

FORBIDDEN = ("torch", "torchvision", "openvino", "detectron2", "triton_python_backend_utils")
TORCH_FREE = ("d2_triton/client", "d2_triton/gateway", "d2_triton/vision", "d2_triton/parity")
TORCH_FREE_MODULES = (
    "d2_triton.errors",
    "d2_triton.names",
    "d2_triton.carried",
    "d2_triton.model_config",
)

BLOCKER = """
import importlib.abc, sys
FORBIDDEN = {forbidden!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"{{name}} is not installed here (the gateway image has none)")
        return None
sys.meta_path.insert(0, Blocker())
import importlib
for module in {modules!r}:
    importlib.import_module(module)
print("imported", len({modules!r}))
"""


def modules_under(folder: str) -> list[str]:
    root = CHECKOUT / folder
    return [
        ".".join(path.relative_to(CHECKOUT).with_suffix("").parts)
        for path in sorted(root.rglob("*.py"))
        if path.name != "__main__.py"
    ]


def import_without_torch(modules: list[str]) -> subprocess.CompletedProcess:
    code = BLOCKER.format(forbidden=FORBIDDEN, modules=modules)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=CHECKOUT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("folder", TORCH_FREE)
def test_the_folder_imports_without_torch_openvino_or_detectron2(folder):
    modules = modules_under(folder)
    assert len(modules) >= 3
    run = import_without_torch(modules)
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_contract_imports_without_torch():
    run = import_without_torch(list(TORCH_FREE_MODULES))
    assert run.returncode == 0, run.stderr[-2000:]


def foreign_imports(module: str) -> set[str]:
    """What ``module``'s source imports beyond the standard library and the contract."""
    tree = ast.parse((CHECKOUT / (module.replace(".", "/") + ".py")).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}: a relative import"
            if node.module == "d2_triton":  # from d2_triton import names
                found.update(f"d2_triton.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
    standard = sys.stdlib_module_names | {"__future__"}
    return {n for n in found if n not in TORCH_FREE_MODULES and n.split(".")[0] not in standard}


@pytest.mark.parametrize("module", TORCH_FREE_MODULES)
def test_the_contract_imports_the_standard_library_and_itself_only(module):
    """The contract is the bottom: nothing of ours (vision, serving ...) nor numpy under it."""
    assert foreign_imports(module) == set()


def test_the_contract_check_sees_what_a_module_imports():
    assert foreign_imports("d2_triton.vision.labels") == {"numpy"}


def test_the_blocker_blocks():
    """The check itself: a module that imports torch fails under it."""
    run = import_without_torch(["d2_triton.serving.stages"])
    assert run.returncode != 0 and "torch is not installed here" in run.stderr
