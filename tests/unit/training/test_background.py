"""The suite's background training yields the CPU to every other session (helpers.training)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers.training import lowest_session_priority


def test_a_process_in_its_own_session_gets_a_nice_19_autogroup():
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        said = lowest_session_priority(process.pid)
        autogroup = Path(f"/proc/{process.pid}/autogroup")
        if autogroup.exists():  # a kernel with autogroups: set, and said so
            assert autogroup.read_text().strip().endswith("nice 19")
            assert said == f"scheduling: {autogroup.read_text().strip()}"
        else:  # none: nice alone orders the processes, and the log says so
            assert said.startswith("scheduling: nice 19 only")
        mine = Path("/proc/self/autogroup")
        assert not mine.exists() or not mine.read_text().strip().endswith("nice 19")
    finally:
        process.kill()
        process.wait()
