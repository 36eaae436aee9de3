"""pyproject.toml declares what the requirement files pin, and the package ships what it needs.

The requirement files are the sets the setup installs (and the tests ran with); the
extras are what ``pip install 'd2-triton[client]'`` gets.  One set of pins: these tests fail
when the two drift apart.  tests/integration/test_wheel.py installs the built wheel.
"""

from __future__ import annotations

import importlib
import re

import tomllib

from d2_triton.cache import CHECKOUT

PROJECT = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
SELF = re.compile(r"^d2-triton\[")


def pins(name: str) -> set[str]:
    """A requirement file's own pins (not the files it includes), without comments."""
    lines = (line.split("#")[0].strip() for line in (CHECKOUT / name).read_text().splitlines())
    return {line for line in lines if line and not line.startswith("-r")}


def extra(name: str) -> set[str]:
    """An extra's own requirements (not the extras it builds on)."""
    return {r for r in PROJECT["optional-dependencies"][name] if not SELF.match(r)}


def test_the_client_and_gateway_extras_pin_requirements_client_txt():
    assert extra("client") | extra("gateway") == pins("requirements-client.txt")
    assert not extra("client") & extra("gateway")


def test_the_server_extra_pins_requirements_txt_on_top_of_the_gateway():
    assert extra("server") == pins("requirements.txt")
    assert "d2-triton[gateway]" in PROJECT["optional-dependencies"]["server"]
    assert "d2-triton[client]" in PROJECT["optional-dependencies"]["gateway"]


def test_the_package_alone_pulls_in_nothing():
    assert PROJECT["dependencies"] == []


def test_console_scripts_name_functions_that_exist():
    assert set(PROJECT["scripts"]) == {"d2-triton", "d2-triton-gateway", "d2-triton-server"}
    for target in PROJECT["scripts"].values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_package_data_covers_every_file_the_code_reads_beside_itself():
    data = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = data["package-data"]
    for package, patterns in declared.items():
        folder = CHECKOUT / package.replace(".", "/")
        assert all(list(folder.glob(pattern)) for pattern in patterns), (package, patterns)
    page = {p.name for p in (CHECKOUT / "d2_triton/gateway/page").iterdir()}
    assert page == {"index.html", "page.js", "page.css", "favicon.svg"}
    non_python = {
        path.relative_to(CHECKOUT / "d2_triton")
        for path in (CHECKOUT / "d2_triton").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }
    covered = {
        path.relative_to(CHECKOUT / "d2_triton")
        for package, patterns in declared.items()
        for pattern in patterns
        for path in (CHECKOUT / package.replace(".", "/")).glob(pattern)
    }
    assert non_python <= covered, non_python - covered


def test_no_shipped_module_imports_the_testing_helpers_the_wheel_leaves_out():
    found = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert found["packages"]["find"]["exclude"] == ["d2_triton.testing*"]
    shipped = [p for p in (CHECKOUT / "d2_triton").rglob("*.py") if "testing" not in p.parts]
    imports_testing = re.compile(r"^\s*(from|import) d2_triton(\.testing| import testing)", re.M)
    importing = [p.name for p in shipped if imports_testing.search(p.read_text())]
    assert len(shipped) > 50 and importing == []
    assert imports_testing.search("    from d2_triton.testing.load import run_load")
