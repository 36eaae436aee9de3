"""The shapes model trained in the background while the other tests run.

Training is the largest piece of a fresh machine's suite (~12 minutes on 2 cores), and the
other tests leave part of the CPU idle (server starts, clients waiting on answers, stubs
importing torch).  So the training command starts with the test session, at the lowest CPU
priority, and the accuracy tests, which run last, wait for it.  Its figures do not depend
on how long it took: it is seeded, and its checkpoint is the one ``benchmarks.accuracy``
would have trained in the test process.  A cached model makes the command return at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks import accuracy
from helpers.exports import REPO_ROOT


class BackgroundTraining:
    """``python -m training.train`` for the accuracy tests' model, niced, logging to ``log``."""

    def __init__(self, log: Path):
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "training.train"]
        command += ["--out", str(accuracy.TRAINED), "--data", str(accuracy.DATA)]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: os.nice(19),  # only what the tests leave idle
            )

    def wait(self) -> None:
        """Until the training is done (at full speed once the tests before are)."""
        if self.process is None:
            return
        status = self.process.wait()
        tail = self.log.read_text(errors="replace")[-3000:]
        assert status == 0, f"training failed (status {status}), {self.log}:\n{tail}"

    def stop(self) -> None:
        """End a training the session no longer waits for (an aborted run)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()
