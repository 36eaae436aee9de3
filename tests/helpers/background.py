"""What the suite prepares beside its tests instead of before them: the trained model, its
exports and the families' exports, which only the last modules serve.

On a fresh machine the suite's trained model (``benchmarks.accuracy.SUITE_TRAINING``, 300
iterations) is the single longest piece of the suite: about 2 to 5 minutes of one core,
depending on the CPU; its four exports and the five families' exports take another two or
three.  Many of the other tests leave a core idle part of the time (unit tests,
single-threaded Python, servers starting, clients waiting for answers), so as soon as the
suite knows which of those modules it runs it starts ``python -m helpers.background STEP...``,
one process that does the steps they need in order, and runs those modules last
(``conftest.LAST_MODULES``).  The process gets only what the other tests leave: nice 19, in
a session of its own whose autogroup is at nice 19 too.  Linux shares CPU between sessions'
autogroups first (``sched_autogroup_enabled``, on in these machines' kernels) and applies
nice only inside one, so a nice-19 process in pytest's session took a whole core from
tritonserver (a session of its own) whenever the test waited for an answer: a 2-thread
TorchScript request ran 5 times slower beside it (2.4 s alone, 11.8 s beside it, 2.1 s beside
it in a nice-19 autogroup; Intel Xeon with AMX), and the tests run during the training 1.5-6
times slower (docs/testing.md).  It trains on one thread (``benchmarks.accuracy.TRAINING``
says why); it is seeded, so the checkpoint is the same however it was scheduled.

The exports are cached by content under a lock (``helpers.exports``,
``benchmarks.accuracy.export_variants``): a test that asks for one the process is still
making waits for it (and the process then has the CPU to itself), and one it has not begun
is made by the test, which the process then finds made.
"""

from __future__ import annotations

import enum
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import accuracy
from d2_triton.cache import CHECKOUT, cache_dir
from d2_triton.server.processes import stop_process

REPO_ROOT = CHECKOUT
LOG = cache_dir() / "reports" / "background.log"
# A hang catcher only: the full 1500-iteration recipe took ~28 minutes alone on one thread of
# 2 AVX2-only cores (41 beside the other tests; the suite's 300-iteration one takes a fifth
# of that), and the whole suite runs under 90.
WAIT_S = 3 * 3600


class Step(enum.Enum):
    """A piece of background work, in the order the process does them."""

    TRAINED_MODEL = "trained-model"
    TRAINED_MODEL_EXPORTS = "trained-model-exports"  # benchmarks.accuracy.export_variants
    FAMILIES = "families"  # helpers.exports.families_repository


# The steps each module's tests need (conftest runs these modules last, in this order).  The
# families' exports come last, and their tests after the others: with the families' before
# the trained model's, test_families and then test_accuracy waited ~25 and ~50 s for them at
# the end of a run on the AMD EPYC with AVX-512 (the training ended after 657 s, the tests
# before these modules after 943); a child making the families' exports beside the training
# took its CPU (equal shares in one autogroup): the training ended after 1003 s instead.
NEEDED_BY = {
    "test_accuracy": (Step.TRAINED_MODEL, Step.TRAINED_MODEL_EXPORTS),
    "test_page": (Step.TRAINED_MODEL, Step.TRAINED_MODEL_EXPORTS),
    "test_families": (Step.FAMILIES,),
}


def steps_for(modules: set[str]) -> list[Step]:
    """The steps the named test modules need, in the process's order."""
    needed = {step for module in modules for step in NEEDED_BY.get(module, ())}
    return [step for step in Step if step in needed]


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


class BackgroundWork:
    """``python -m helpers.background`` doing ``steps``, at the lowest priority.

    Work already cached makes each step find it at once.
    """

    def __init__(self, steps: list[Step]) -> None:
        LOG.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(LOG, "w")  # noqa: SIM115 (closed by wait or stop)
        command = ["nice", "-n", "19", sys.executable, "-m", "helpers.background"]
        path = os.pathsep.join(str(folder) for folder in (REPO_ROOT / "tests", REPO_ROOT))
        self.process = subprocess.Popen(
            [*command, *(step.value for step in steps)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": path},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        print(lowest_session_priority(self.process.pid), file=self._log, flush=True)

    def wait(self) -> None:
        """Wait for every step to end; an error with the log's end if one failed."""
        try:
            status = self.process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"background work still running after {WAIT_S} s: {LOG}") from None
        self._log.close()
        if status != 0:
            tail = LOG.read_text()[-3000:]
            raise AssertionError(f"background work failed (status {status}), {LOG}:\n{tail}")

    def stop(self) -> int | None:
        """End the process if it still runs (the session ends early, or a test made what it
        was making).  Its exit status if it had ended by itself, else None."""
        ended = self.process.poll()
        stop_process(self.process, 30)
        self._log.close()
        return ended


def trained_model() -> Path:
    return accuracy.trained_model(accuracy.SUITE_TRAINING)


def run(step: Step) -> None:
    """Do one step (in this process; the exports of the trained model in their own)."""
    if step is Step.TRAINED_MODEL:
        from helpers.thread_pools import thread_pools_kept

        with thread_pools_kept():  # the exports after it take torch's default threads again
            trained_model()  # on SUITE_TRAINING's one thread
    elif step is Step.FAMILIES:
        from helpers.exports import families_repository

        families_repository()
    else:
        accuracy.export_variants(trained_model(), accuracy.VARIANTS, accuracy.EXPORTS)


def main(names: list[str]) -> int:
    """Do the named steps in order, saying when each ended."""
    for name in names:
        started = time.monotonic()
        run(Step(name))
        print(f"[background] {name}: done in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
