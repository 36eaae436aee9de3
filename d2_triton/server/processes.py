"""The server's processes: the tritonserver tree, and how a started process is stopped.

Which Python-backend stub serves which model, and its RSS: used by the reload watchdog
(d2_triton.server) to notice a stub that died, by the benchmarks and the soak script to
sample memory per process, and by the tests to check that no stub was restarted (or to kill
one on purpose); Linux /proc only.  :func:`stop_process` is the one way this project stops
a process it started (tritonserver, the front, the gateway, the suite's background
training).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ServerProcess:
    """One process of the tritonserver tree."""

    pid: int
    name: str  # "tritonserver", or "stub:<model>" for a Python-backend stub
    rss_bytes: int
    state: str = "R"  # /proc state letter; "Z": exited, not yet reaped by its parent

    @property
    def alive(self) -> bool:
        """Whether it still runs (not a zombie)."""
        return self.state not in ("Z", "X")


def _read_status(entry: Path) -> dict[str, str] | None:
    try:
        lines = (entry / "status").read_text().splitlines()
    except OSError:
        return None
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _name(entry: Path, command: str) -> str:
    """A stub's argv[1] is its model's ``<repository>/<model>/1/model.py``."""
    try:
        arguments = (entry / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return command
    if len(arguments) > 1 and arguments[1].endswith(b"/model.py"):
        return f"stub:{Path(arguments[1].decode()).parents[1].name}"
    return command


def process_tree(root_pid: int) -> list[ServerProcess]:
    """``root_pid`` and all its descendants (processes that exit meanwhile are skipped)."""
    children: dict[int, list[int]] = {}
    found: dict[int, ServerProcess] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        status = _read_status(entry)
        if status is None:
            continue
        pid = int(entry.name)
        children.setdefault(int(status["PPid"]), []).append(pid)
        rss = int(status.get("VmRSS", "0 kB").split()[0]) * 1024
        state = status.get("State", "R").strip()[:1]
        found[pid] = ServerProcess(pid, _name(entry, status["Name"].strip()), rss, state)
    tree, pending = [], [root_pid]
    while pending:
        pid = pending.pop()
        if pid in found:
            tree.append(found[pid])
        pending += children.get(pid, [])
    return tree


def live_stubs(root_pid: int) -> dict[str, set[int]]:
    """Model name -> pids of its running stubs (one per model instance)."""
    stubs: dict[str, set[int]] = {}
    for process in process_tree(root_pid):
        if process.name.startswith("stub:") and process.alive:
            stubs.setdefault(process.name.removeprefix("stub:"), set()).add(process.pid)
    return stubs


def stub_pids(root_pid: int) -> dict[str, int]:
    """Model name -> pid of its stub, for models of one instance each."""
    return {model: min(pids) for model, pids in live_stubs(root_pid).items()}


def kill_stub(pid: int) -> None:
    """SIGKILL a stub (how the watchdog ends one a reload replaced); one gone already is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def rss_by_process(root_pid: int) -> dict[str, int]:
    """Process name -> RSS bytes (summed over same-named processes)."""
    totals: dict[str, int] = {}
    for process in process_tree(root_pid):
        totals[process.name] = totals.get(process.name, 0) + process.rss_bytes
    return totals


def stop_process(
    process: subprocess.Popen,
    timeout: float,
    first: signal.Signals = signal.SIGTERM,
    group: bool = False,
) -> int:
    """Send ``first`` (to its process group if ``group``), then SIGKILL after ``timeout``.

    Returns the exit status; a process that has ended already is only reaped.
    """
    if process.poll() is not None:
        return process.returncode

    def send(signal_number: signal.Signals) -> None:
        if group:
            os.killpg(process.pid, signal_number)
        else:
            process.send_signal(signal_number)

    send(first)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        return process.wait()
