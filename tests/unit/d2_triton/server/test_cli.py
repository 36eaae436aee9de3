"""The launcher's command line: a repository without a model, a bad number: one line."""

from __future__ import annotations

import signal
import threading

import pytest

from d2_triton.server import cli
from d2_triton.server.cli import (
    WATCHDOG_STALLED_EXIT,
    install_signal_handlers,
    main,
    serve_in_foreground,
)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--model-repository", "{tmp}"], "holds no exported model"),
        (["--model-repository", "{tmp}/nowhere"], "does not exist"),
        (["--model-repository", "{tmp}", "--max-in-flight", "0"], "--max-in-flight"),
        (["--http-port", "eighty"], "--http-port"),
    ],
)
def test_bad_arguments_end_in_one_line(capsys, tmp_path, argv, says):
    with pytest.raises(SystemExit) as exited:
        main([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err


class StalledWatchdog:
    def stalled(self) -> bool:
        return True

    def seconds_since_tick(self) -> float:
        return 42.0


class RunningServer:
    """A server whose processes run on and whose watchdog has stopped looking."""

    def __init__(self):
        self.watchdog = None
        self.stopped = False

    def start(self):
        return self

    def wait_ready(self, timeout):
        pass

    def start_watchdog(self):
        self.watchdog = StalledWatchdog()

    def exited(self):
        return None

    def stop(self):
        self.stopped = True
        return 0


def test_a_stalled_watchdog_ends_the_launcher_with_its_own_status(capsys):
    server = RunningServer()
    assert serve_in_foreground(server, threading.Event()) == WATCHDOG_STALLED_EXIT
    assert server.stopped
    assert "the reload watchdog has stopped looking" in capsys.readouterr().err


class Watchdog:
    stop_requested = False

    def request_stop(self) -> None:
        self.stop_requested = True


class Running:
    """A process that has not exited."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self):
        return None


class SignalledServer:
    def __init__(self, watchdog):
        self.watchdog = watchdog
        self.front_process, self.process = Running(100), Running(200)


@pytest.mark.parametrize("watched", [True, False])
def test_a_stop_signal_leaves_a_watched_tritonserver_to_the_ordered_stop(monkeypatch, watched):
    """Watched, tritonserver is signalled by ``server.stop()`` after a reload in flight ends
    (a signal to its group mid-load kills the loading stub: Triton 2.51 then hangs); still
    starting (no watchdog yet), it is signalled at once, which ends its wait for ready."""
    sent = []
    monkeypatch.setattr(cli.os, "killpg", lambda pid, signum: sent.append((pid, signum)))
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stopping, server = threading.Event(), SignalledServer(Watchdog() if watched else None)
    try:
        install_signal_handlers(stopping, [server])
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert stopping.is_set()
    expected = [(100, signal.SIGQUIT)] + ([] if watched else [(200, signal.SIGTERM)])
    assert sent == expected
    assert not watched or server.watchdog.stop_requested
