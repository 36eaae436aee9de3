"""The environment a tritonserver runs in: its Python packages, its binary, its backends.

nvidia-pytriton==0.7.0 bundles Triton 2.51 (``pytriton/tritonserver/bin/tritonserver``), its
Python backend (``backends/python/libtriton_python.so``) and one Python-backend stub per
Python version (``python_backend_stubs/3.X/``).  Triton looks for the stub next to the
backend library, so :meth:`ServerEnvironment.prepare_backends` assembles a writable backend
directory with the stub matching the server environment's Python.

The stub embeds the system ``libpython3.X.so`` and imports packages from the environment
whose ``bin/`` is first on ``PATH``; :meth:`ServerEnvironment.process_environment` puts the
server environment's ``bin/`` there.  The libraries the copied stub needs (libcudart etc.,
found through an ``$ORIGIN`` rpath at its original place) are added with
``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from d2_triton.errors import ServerEnvironmentError
from d2_triton.serving.numpy_version import check_numpy_version

_PROBE = (
    "import importlib.util, json, sys, numpy;"
    "spec = importlib.util.find_spec('pytriton');"
    "print(json.dumps({'numpy': numpy.__version__,"
    " 'python': '%d.%d' % sys.version_info[:2],"
    " 'pytriton': spec.submodule_search_locations[0] if spec else None}))"
)


@dataclass(frozen=True)
class ServerEnvironment:
    """The Python environment the stubs import packages from, and the tritonserver to run.

    Attributes:
        prefix: the environment's root (its ``bin/python``).
        python_version: ``"3.11"``: picks the matching stub.
        numpy_version: must be below 2 (checked by :meth:`inspect`).
        pytriton_dir: nvidia-pytriton's package folder, whose tritonserver is run.
        installed_tritonserver: an installed tritonserver to run instead (NVIDIA's images
            keep theirs in /opt/tritonserver, with the backends beside it).
    """

    prefix: Path
    python_version: str
    numpy_version: str
    pytriton_dir: Path | None
    installed_tritonserver: Path | None = None

    @classmethod
    def inspect(
        cls, prefix: Path | str = sys.prefix, tritonserver: Path | None = None
    ) -> ServerEnvironment:
        """Ask ``prefix``'s Python what it has; ServerEnvironmentError if it cannot serve."""
        prefix = Path(prefix).absolute()
        python = prefix / "bin" / "python"
        result = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True)
        if result.returncode != 0:
            raise ServerEnvironmentError(f"cannot inspect {python}: {result.stderr.strip()}")
        facts = json.loads(result.stdout)
        if not facts["pytriton"] and tritonserver is None:
            raise ServerEnvironmentError(
                f"nvidia-pytriton is not installed in {prefix}; it provides tritonserver "
                "(pip install --no-deps nvidia-pytriton==0.7.0), or pass an installed one"
            )
        environment = cls(
            prefix,
            facts["python"],
            facts["numpy"],
            Path(facts["pytriton"]) if facts["pytriton"] else None,
            tritonserver,
        )
        environment.check_numpy()
        return environment

    def check_numpy(self) -> None:
        """ServerEnvironmentError if the environment has numpy 2."""
        check_numpy_version(self.numpy_version, where=str(self.prefix))

    @property
    def tritonserver(self) -> Path:
        """The tritonserver binary to run."""
        if self.installed_tritonserver is not None:
            return self.installed_tritonserver
        return self.pytriton_dir / "tritonserver" / "bin" / "tritonserver"

    @property
    def bundled_libraries(self) -> list[str]:
        """Folders of the shared libraries nvidia-pytriton's tritonserver links."""
        if self.installed_tritonserver is not None:
            return []
        return [str(self.pytriton_dir.parent / "nvidia_pytriton.libs")]

    def prepare_backends(self, directory: Path) -> Path:
        """A backend directory holding the Python backend and the matching stub.

        An installed tritonserver comes with its backends (``<root>/bin/tritonserver``,
        ``<root>/backends``), its stub built for the Python it ships with: used as they are.
        """
        if self.installed_tritonserver is not None:
            return self.installed_tritonserver.parent.parent / "backends"
        source = self.pytriton_dir / "tritonserver" / "backends" / "python"
        stub = (
            self.pytriton_dir
            / "tritonserver"
            / "python_backend_stubs"
            / self.python_version
            / "triton_python_backend_stub"
        )
        if not stub.is_file():
            raise ServerEnvironmentError(f"no Python-backend stub for Python {self.python_version}")
        target = directory / "python"
        target.mkdir(parents=True, exist_ok=True)
        for item in [*source.iterdir(), stub]:
            if item.is_file():
                _install_file(item, target / item.name)
        return directory

    def process_environment(self) -> dict[str, str]:
        """os.environ with this environment first on PATH and its libraries findable."""
        env = dict(os.environ)
        env["PATH"] = f"{self.prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        libraries = list(self.bundled_libraries)
        if env.get("LD_LIBRARY_PATH"):
            libraries.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libraries)
        env.pop("PYTHONHOME", None)
        return env


def _install_file(source: Path, target: Path) -> None:
    """Copy unless identical; replace atomically, as a running server may be using it."""
    if target.is_file() and filecmp.cmp(source, target, shallow=False):
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.copy2(source, partial)
    os.replace(partial, target)
