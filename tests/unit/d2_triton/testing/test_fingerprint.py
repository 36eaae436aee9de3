"""The export fingerprint covers every d2_triton module the exporter imports."""

from __future__ import annotations

import json
import subprocess
import sys

from d2_triton.cache import CHECKOUT
from d2_triton.testing.fingerprint import export_sources


def test_every_module_the_export_command_loads_is_fingerprinted():
    code = (
        "import json, sys; import export_tools.export; "
        "print(json.dumps(sorted(m.__file__ for m in list(sys.modules.values()) "
        "if getattr(m, '__file__', None) "
        "and m.__name__.startswith(('d2_triton', 'export_tools')))))"
    )
    command = [sys.executable, "-c", code]
    run = subprocess.run(command, cwd=CHECKOUT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = {CHECKOUT / file for file in json.loads(run.stdout.splitlines()[-1])}
    assert any(path.match("export_tools/api.py") for path in loaded)
    missing = loaded - set(export_sources())
    assert not missing, sorted(str(path) for path in missing)


def test_templates_and_export_tools_are_included_and_the_client_is_not():
    sources = {path.relative_to(CHECKOUT).as_posix() for path in export_sources()}
    assert {"models/detector/1/model.py", "export_tools/repository/writer.py"} <= sources
    served_elsewhere = ("d2_triton/client", "d2_triton/gateway")
    assert not any(source.startswith(served_elsewhere) for source in sources)
