"""The shapes model's training, run beside the rest of the suite instead of before it.

On a fresh machine the suite's trained model (``benchmarks.accuracy.SUITE_TRAINING``, 600
iterations) is the single longest piece of the suite: about 5 to 12 minutes of one core,
depending on the CPU.  Many of the other
tests leave a core idle part of the time (unit tests, single-threaded Python, servers
starting, clients waiting for answers), so the suite starts ``python -m training.train`` as
a background process at the lowest CPU priority as soon as it knows a test needs the model,
and runs those tests last.  It gets only what the other tests leave: nice 19, in a session of
its own whose autogroup is at nice 19 too.  Linux shares CPU between sessions' autogroups
first (``sched_autogroup_enabled``, on in these machines' kernels) and applies nice only
inside one, so a nice-19 process in pytest's session took a whole core from tritonserver
(a session of its own) whenever the test waited for an answer: a 2-thread TorchScript
request ran 5 times slower beside it (2.4 s alone, 11.8 s beside it, 2.1 s beside it in a
nice-19 autogroup; Intel Xeon with AMX), and the tests run during the training 1.5-6 times
slower (docs/testing.md).  It trains on one thread (``benchmarks.accuracy.TRAINING``
says why); it is seeded, so the checkpoint is the same however it was scheduled.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks import accuracy
from d2_triton.cache import CHECKOUT, cache_dir
from d2_triton.server.processes import stop_process

REPO_ROOT = CHECKOUT
LOG = cache_dir() / "reports" / "training.log"
# A hang catcher only: the full 1500-iteration recipe took ~28 minutes alone on one thread of
# 2 AVX2-only cores (41 beside the other tests; the suite's 600-iteration one takes 40 % of
# that), and the whole suite runs under 90.
WAIT_S = 3 * 3600


def lowest_session_priority(pid: int) -> str:
    """Put the autogroup of ``pid``'s session at nice 19; what came of it, for the log.

    Without autogroups (no such file) nice alone orders every process, and the process's own
    nice 19 is enough.
    """
    autogroup = Path(f"/proc/{pid}/autogroup")
    try:
        autogroup.write_text("19")
        return f"scheduling: {autogroup.read_text().strip()}"
    except OSError as error:
        return f"scheduling: nice 19 only; the autogroup was not set ({error})"


class BackgroundTraining:
    """``python -m training.train`` for the suite's trained model, at the lowest priority.

    A cached model makes the process find it and exit at once.
    """

    def __init__(self) -> None:
        LOG.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(LOG, "w")  # noqa: SIM115 (closed by wait or stop)
        spec = accuracy.SUITE_TRAINING
        command = [
            *("nice", "-n", "19", sys.executable, "-m", "training.train"),
            *("--out", str(accuracy.model_folder(spec)), "--data", str(accuracy.DATA)),
            *("--max-iter", str(spec.max_iter), "--images-per-batch", str(spec.images_per_batch)),
            *("--base-lr", str(spec.base_lr), "--seed", str(spec.seed)),
            *("--threads", str(spec.threads)),
        ]
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        print(lowest_session_priority(self.process.pid), file=self._log, flush=True)

    def wait(self) -> Path:
        """Wait for the training to end; the model's folder, or an error with its log."""
        try:
            status = self.process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"training still running after {WAIT_S} s; log: {LOG}") from None
        self._log.close()
        if status != 0:
            tail = LOG.read_text()[-3000:]
            raise AssertionError(f"training failed (status {status}), {LOG}:\n{tail}")
        return accuracy.trained_model(accuracy.SUITE_TRAINING)  # finds the checkpoint it wrote

    def stop(self) -> None:
        """End the process if it still runs (the session ends early)."""
        stop_process(self.process, 30)
        self._log.close()
