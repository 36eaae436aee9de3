"""Run the real ``tritonserver`` that nvidia-pytriton ships, on a model repository.

Split by concern: ``environment`` (the Python environment, the binary, the backend
directory), ``front`` (nginx before tritonserver: complete, checked, admitted requests
only), ``settings`` (how tritonserver runs: ports, admin key, command line),
``tritonserver`` (start, readiness, stop), ``processes`` (the /proc reads, stopping a
process), ``watchdog`` (noticing a model whose Python-backend stub died, or whose versions
changed) and ``reloader`` (loading it again), ``health`` (each pipeline's state, the one
source of readiness), ``status`` (the endpoint the front asks for readiness and metrics)
and ``cli`` (``python -m d2_triton.server``).
"""

from d2_triton.errors import ServerEnvironmentError
from d2_triton.server.environment import ServerEnvironment
from d2_triton.server.reloader import Reload
from d2_triton.server.settings import ServerSettings
from d2_triton.server.tritonserver import TritonServer
from d2_triton.server.watchdog import ReloadWatchdog

__all__ = [
    "Reload",
    "ReloadWatchdog",
    "ServerEnvironment",
    "ServerEnvironmentError",
    "ServerSettings",
    "TritonServer",
]
