"""The suite's background work yields the CPU to every other session (helpers.background)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers.background import Step, lowest_session_priority, steps_for


def test_a_process_in_its_own_session_gets_a_nice_19_autogroup():
    mine = Path("/proc/self/autogroup")
    my_autogroup = mine.read_text() if mine.exists() else None
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        said = lowest_session_priority(process.pid)
        autogroup = Path(f"/proc/{process.pid}/autogroup")
        if autogroup.exists():  # a kernel with autogroups: set, and said so
            assert autogroup.read_text().strip().endswith("nice 19")
            assert said == f"scheduling: {autogroup.read_text().strip()}"
        else:  # none: nice alone orders the processes, and the log says so
            assert said.startswith("scheduling: nice 19 only")
        # The test's own session keeps its autogroup and priority, whatever they are: a suite
        # started from a session already at nice 19 once failed a check that asked for 0.
        assert (mine.read_text() if mine.exists() else None) == my_autogroup
    finally:
        process.kill()
        process.wait()


def test_the_steps_are_those_the_collected_modules_need_in_the_process_order():
    assert steps_for({"test_front", "test_parity"}) == []
    assert steps_for({"test_families"}) == [Step.FAMILIES]
    assert steps_for({"test_page", "test_families"}) == [
        Step.TRAINED_MODEL,
        Step.TRAINED_MODEL_EXPORTS,
        Step.FAMILIES,
    ]
    assert steps_for({"test_accuracy"}) == [Step.TRAINED_MODEL, Step.TRAINED_MODEL_EXPORTS]
