"""stop_process: the first signal, SIGKILL after the timeout, the group, an ended process."""

from __future__ import annotations

import signal
import subprocess
import sys

from d2_triton.server.processes import stop_process

# A child that ignores SIGTERM and SIGQUIT and says so once it does.
STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGQUIT, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n"
)


def started(code: str, **options) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, **options
    )
    assert process.stdout.readline() == "ready\n"
    return process


def test_the_first_signal_ends_a_process_that_heeds_it():
    process = started("import time; print('ready', flush=True); time.sleep(600)")
    assert stop_process(process, timeout=60) == -signal.SIGTERM


def test_a_process_that_ignores_it_is_killed_after_the_timeout():
    process = started(STUBBORN)
    assert stop_process(process, timeout=0.5) == -signal.SIGKILL


def test_group_sends_to_the_process_group():
    process = started(STUBBORN, start_new_session=True)
    assert stop_process(process, 0.5, signal.SIGQUIT, group=True) == -signal.SIGKILL


def test_an_ended_process_is_only_reaped():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    assert stop_process(process, timeout=60) == 3
