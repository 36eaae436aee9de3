"""OpenVINO's usage telemetry, off in the processes that serve or export.

OpenVINO sends anonymous usage events to Google Analytics unless the machine's user opted out
(``opt_in_out --opt_out``, a file in their home): one on every ``import openvino`` (so at every
load and reload of a detector's stub), more from its model conversion (every staged export)
and from NNCF (int8 exports).  Each event forks the process, several GB with torch and the
model, and waits up to 3 s for an answer; where the server and the exports run (clusters,
image builds, machines without the internet) that is only cost: the shapes model's default
export took 10.7 s with it and 6.4 s without, its int8 export 30.9 s and 26.1 (AMD EPYC with
AVX-512, 2 cores).  A model server is not the place to send its users' usage data either.
OpenVINO and NNCF fall back to a stub when ``openvino_telemetry`` cannot be imported; this
makes it so for the current process only, and must run before OpenVINO is imported.  Nothing
is written anywhere; other processes keep the user's choice.
"""

from __future__ import annotations

import sys

MODULE = "openvino_telemetry"


def turn_off_openvino_telemetry() -> bool:
    """Keep this process's OpenVINO and NNCF from sending usage events.

    Returns whether it took effect: ``False`` where the telemetry package was imported
    already (OpenVINO imported before), which keeps what it had.
    """
    if sys.modules.get(MODULE, None) is not None:
        return False
    sys.modules[MODULE] = None  # an import of it now raises ImportError, as if not installed
    return True
