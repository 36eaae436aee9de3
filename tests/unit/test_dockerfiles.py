"""Each Dockerfile step has the project's files it runs, in seconds, without building.

A Dockerfile copies a few files before its slow steps (so a change to the code reuses the
environments' layer), and nothing built the model server's image for a week after its
first ``RUN`` started importing a module it did not copy (issue 35).  Here every ``RUN`` of
every Dockerfile is read: the scripts it runs (and the scripts those run), and the Python
modules they run with ``-m``, followed through their imports of this project's packages,
must all be among the files copied before that step.  Only imports a step executes count:
those at module level, and those inside the functions of the module it runs.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path, PurePosixPath

import pytest

from d2_triton.cache import CHECKOUT

DOCKERFILES = sorted((CHECKOUT / "docker").glob("Dockerfile*"))
FIRST_PARTY = ("d2_triton", "export_tools", "models", "training", "benchmarks")
SCRIPT = re.compile(r"\b(scripts/[\w.-]+\.sh)\b")
MODULE = re.compile(r"\s-m\s+([A-Za-z_][\w.]*)")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) in order, continuation lines joined, comments dropped."""
    joined, found = "", []
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        joined += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if joined.strip():
                keyword, _, rest = joined.strip().partition(" ")
                found.append((keyword.upper(), rest.strip()))
            joined = ""
    return found


def tracked_files() -> list[str]:
    """The checkout's files, without its hidden folders (.git, .cache: never copied)."""
    tops = [path for path in CHECKOUT.iterdir() if not path.name.startswith(".")]
    return [
        str(path.relative_to(CHECKOUT))
        for top in tops
        for path in ([top] if top.is_file() else top.rglob("*"))
        if path.is_file()
    ]


def copied(arguments: str, files: list[str]) -> set[str]:
    """The checkout's files a ``COPY`` puts at the same path under the work directory."""
    words = [w for w in shlex.split(arguments) if not w.startswith("--")]
    sources, destination = words[:-1], words[-1]
    found = set()
    for source in sources:
        source = source.rstrip("/") if source not in (".", "./") else ""
        for name in files:
            inside = name if not source else name.removeprefix(source + "/")
            if source and name != source and inside == name:
                continue  # not under this source
            tail = PurePosixPath(name).name if name == source else inside
            if str(PurePosixPath(destination) / tail) == name:
                found.add(name)
    return found


def runs(command: str) -> tuple[set[str], set[str]]:
    """The scripts a command runs, transitively, and the modules they run with ``-m``."""
    scripts, modules, pending = set(), set(MODULE.findall(" " + command)), SCRIPT.findall(command)
    while pending:
        script = pending.pop()
        if script in scripts:
            continue
        scripts.add(script)
        text = (CHECKOUT / script).read_text()
        pending += SCRIPT.findall(text)
        modules |= set(MODULE.findall(text))
    return scripts, {m for m in modules if m.split(".")[0] in FIRST_PARTY}


def module_file(module: str) -> str | None:
    path = CHECKOUT / module.replace(".", "/")
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return str(candidate.relative_to(CHECKOUT))
    return None


def imported(path: str, with_functions: bool) -> set[str]:
    """First-party modules ``path`` imports (module level; function bodies if asked)."""
    found: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if not inner or with_functions:
                if isinstance(child, ast.Import):
                    found.update(alias.name for alias in child.names)
                elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                    found.add(child.module)
                    found.update(f"{child.module}.{alias.name}" for alias in child.names)
            visit(child, inner)

    visit(ast.parse((CHECKOUT / path).read_text()), False)
    return {module for module in found if module.split(".")[0] in FIRST_PARTY}


def needed_files(module: str) -> set[str]:
    """The files importing and running ``module`` reads: packages, modules, their imports."""
    needed: set[str] = set()
    pending = [(module, True)]
    while pending:
        name, whole = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:depth]))
            if path is not None and path not in needed:
                needed.add(path)
                ran = whole and depth == len(parts)
                pending += [(found, False) for found in imported(path, ran)]
    return needed


def steps(dockerfile: Path) -> list[tuple[str, set[str]]]:
    """Each ``RUN`` with the checkout's files copied before it, in its stage (a stage built
    ``FROM`` an earlier one starts with what that one copied)."""
    files, have, found = tracked_files(), set(), []
    stages: dict[str, set[str]] = {}
    for keyword, arguments in instructions(dockerfile):
        if keyword == "FROM":
            base, *alias = arguments.split()
            have = set(stages.get(base, ()))
            if len(alias) == 2 and alias[0].upper() == "AS":
                stages[alias[1]] = have  # the same set: it grows with the stage
        elif keyword in ("COPY", "ADD") and "--from=" not in arguments:
            have |= copied(arguments, files)
        elif keyword == "RUN":
            found.append((arguments, set(have)))
    return found


def test_a_stage_built_on_another_has_its_files():
    exporter = [
        have
        for command, have in steps(CHECKOUT / "docker" / "Dockerfile")
        if "--export-only" in command
    ]
    assert exporter and "scripts/setup.sh" in exporter[0]  # copied in server-environment


def test_the_install_step_is_followed_through_its_imports():
    """The step that broke: setup.sh runs the Detectron2 installer, which needs commands.py."""
    _, modules = runs("scripts/setup.sh --export-only")
    assert "export_tools.detectron2_setup.install" in modules
    assert "d2_triton/commands.py" in needed_files("export_tools.detectron2_setup.install")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_every_run_step_has_the_files_it_runs(dockerfile):
    assert DOCKERFILES, "no Dockerfile found"
    missing = {}
    for command, have in steps(dockerfile):
        scripts, modules = runs(command)
        needed = scripts | {path for module in modules for path in needed_files(module)}
        if needed - have:
            missing[command[:80]] = sorted(needed - have)
    assert not missing, f"copied after the step that needs them: {missing}"


def test_the_images_and_compose_fail_closed_on_weights_that_cannot_be_had():
    """D2T_ALLOW_RANDOM_WEIGHTS is 0 in the images (./scripts/serve.sh alone sets 1) and
    compose passes 0 unless the operator says 1."""
    image = {
        keyword: arguments
        for keyword, arguments in instructions(CHECKOUT / "docker" / "Dockerfile")
    }
    assert "D2T_ALLOW_RANDOM_WEIGHTS=0" in image["ENV"].split()
    compose = (CHECKOUT / "docker" / "docker-compose.yml").read_text()
    assert "D2T_ALLOW_RANDOM_WEIGHTS: ${D2T_ALLOW_RANDOM_WEIGHTS:-0}" in compose
