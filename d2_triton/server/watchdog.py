"""Reload a model whose Python-backend stub died, or whose versions changed on disk.

Triton 2.51 does not restart a stub that dies (a crash, the OOM killer): the model fails
every request yet reports READY.  So the launcher runs tritonserver with explicit model
control and a :class:`ReloadWatchdog`: a model with fewer live stubs than when healthy is
reloaded in place, which starts new stubs; until the load ends the model is broken or
reloading on the health board (``d2_triton.server.health``), and readiness says so.  The
same watchdog loads a model again when its numbered version folders change (a new export,
a rollback); Triton serves the previous version until the new one is ready.
docs/failures.md tells the whole story.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable

from d2_triton.errors import D2TritonError
from d2_triton.server.health import HealthBoard, ModelState
from d2_triton.server.logs import log
from d2_triton.server.processes import kill_stub
from d2_triton.server.reloader import Reason, Reload, WatchedModel

# Seconds before retrying a failed reload after a death: 5, 10, 20, 40, then 60 at most.  A
# version that failed to load is not retried on a timer: the same files fail the same way, and
# a retry in flight while the operator removes the folder hangs Triton 2.51's load for ever
# (the stub exits, "Python model file not found", and the load waits on it; seen in CI).
FIRST_RETRY_S = 5.0
LAST_RETRY_S = 60.0
# A watchdog that has not looked for this long is stuck: the launcher exits rather than run
# unwatched (its restart policy starts everything again).  A look takes milliseconds (reloads
# run in threads of their own), so only a hung thread misses 30 of them.
STALLED_AFTER_S = 30.0
# A death's survivors (a model of several instances) stay beside its reload's new stubs:
# Triton 2.51 never unloads a generation with a dead instance, so they would idle for ever,
# each holding a detector's memory.  They get no new request once the reload swapped the
# model, only the old generation's queue: at most what the front admitted, which it sizes
# at ~22 s of work (names.ADMITTED_PER_INSTANCE).  This long after, the watchdog ends them.
RETIRE_AFTER_S = 30.0


def start_thread(target: Callable[[], None], name: str) -> None:
    """Run ``target`` in a daemon thread (the watchdog's way of running a reload)."""
    threading.Thread(target=target, name=name, daemon=True).start()


class ReloadWatchdog:
    """Reloads a model whose stub died or whose versions changed; :meth:`tick` is one look.

    Each look compares every watched model's live stubs with the count it had when it was
    healthy: fewer means an instance can only fail from now on, and the model is reloaded.
    The comparison is of states, not of changes between two looks, so nothing that dies
    between looks, during another model's reload or right after its own is missed, and a
    reused pid means nothing.  Reloads run in threads of their own (one per model at a
    time), so a detector's 20 s load delays no other model's detection or reload.  A failed
    reload after a death is retried with back-off; a refused version is tried again when its
    folders change.  Stubs a reload replaced exit on their own, but for a death's survivors,
    which it ends (``RETIRE_AFTER_S``).  Stop the watchdog before stopping the server, or
    the server's own shutdown looks like dying stubs.

    Args:
        list_stubs: model name -> pids of its live stubs (``processes.live_stubs``).
        reload_model: reloads one model (``reloader.ModelReloader``); raises when that fails.
        board: the health board whose models are watched; the watchdog writes their states.
        list_versions: model name -> its version folders (``version_folders``); None: do
            not watch versions.  Models that appear later are not loaded.
        interval: seconds between two looks of the background thread.
        clock: the time source (``time.monotonic``; tests pass their own).
        run: how a reload is run (``start_thread``; tests run it when they choose).
        end_stub: how a replaced survivor is ended (``kill_stub``; see ``RETIRE_AFTER_S``).
    """

    def __init__(
        self,
        list_stubs: Callable[[], dict[str, set[int]]],
        reload_model: Callable[[str], None],
        board: HealthBoard,
        list_versions: Callable[[], dict[str, frozenset[str]]] | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        run: Callable[[Callable[[], None], str], None] = start_thread,
        end_stub: Callable[[int], None] = kill_stub,
    ):
        self.list_stubs = list_stubs
        self.reload_model = reload_model
        self.board = board
        self.list_versions = list_versions
        self.interval = interval
        self.clock = clock
        self.run = run
        self.end_stub = end_stub
        self.reloads: list[Reload] = []
        self.tick_errors = 0
        self._died: set[str] = set()
        self._watches: dict[str, WatchedModel] | None = None
        self._versions: dict[str, frozenset[str]] | None = None
        self._last_tick = clock()
        self._reloads = threading.Condition()  # guards the outcomes; told when a reload ends
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stub-watchdog", daemon=True)

    def start(self) -> ReloadWatchdog:
        """Learn the healthy stubs and start watching in a background thread."""
        self._learn()
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the thread to end (safe in a signal handler: it does not wait)."""
        self._stop.set()

    def stop(self, reloads_timeout: float = 0.0) -> None:
        """End the thread, then wait up to ``reloads_timeout`` for reloads in flight."""
        # Triton 2.51 stopped during a load unloads nothing until it ends, then waits 30 s.
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join()
        with self._reloads:
            if in_flight := self._reloads_in_flight():
                log(f"stopping: waiting for the reload of {', '.join(in_flight)}")
            self._reloads.wait_for(lambda: not self._reloads_in_flight(), reloads_timeout)

    def _reloads_in_flight(self) -> list[str]:
        """Models whose reload has not ended (with ``_reloads`` held, the looker stopped)."""
        return sorted(m for m, w in (self._watches or {}).items() if w.running and not w.outcome)

    def seconds_since_tick(self) -> float:
        """The heartbeat: seconds since the last look began."""
        return self.clock() - self._last_tick

    def stalled(self) -> bool:
        """Whether the watchdog has stopped looking (its thread died or hangs)."""
        if self._stop.is_set():
            return False
        return not self._thread.is_alive() or self.seconds_since_tick() > max(
            STALLED_AFTER_S, 10 * self.interval
        )

    def models_with_dead_instances(self) -> list[str]:
        """Models a stub of which died while this server ran, healed or not.

        Triton 2.51 never unloads an instance whose stub died, not even after the reload that
        replaced it: stopping the server waits its whole exit timeout (30 s) for it.
        """
        return sorted(self._died)

    def tick(self) -> None:
        """One look: take finished reloads, find dead stubs and new versions, start reloads."""
        self._last_tick = self.clock()
        if self._watches is None:
            self._learn()
        self._take_outcomes()
        stubs = self.list_stubs()
        for model in self.board.models:
            self._look_at(model, self._watches[model], frozenset(stubs.get(model, ())))
        self._schedule_version_changes()
        self._start_due_reloads()

    def _learn(self) -> None:
        """The healthy number of stubs of each watched model (the server is ready now)."""
        stubs = self.list_stubs()
        self._watches = {
            model: WatchedModel(
                expected=max(1, len(stubs.get(model, ()))), pids=frozenset(stubs.get(model, ()))
            )
            for model in self.board.models
        }
        if self.list_versions is not None:
            self._versions = self.list_versions()

    def _look_at(self, model: str, watch: WatchedModel, live: frozenset[int]) -> None:
        """Compare a model's live stubs with its healthy count; a reload's own look waits."""
        lost, watch.pids = watch.pids - live, live
        if watch.running:
            return
        self._retire(model, watch, live)
        if len(live - watch.replaced) >= watch.expected:
            if watch.reason is Reason.DIED:  # back (its reload's stubs came up): nothing to do
                watch.due = watch.reason = None
            self.board.set(model, ModelState.READY)
            return
        state = self.board.model(model).state
        if state is not ModelState.BROKEN:  # newly dead, or again right after its reload
            pids = f"pid {', '.join(map(str, sorted(lost)))}" if lost else "no live stub"
            after = " after its reload" if state is ModelState.RELOADING else ""
            detail = f"stub died{after} ({pids})"
            log(f"model {model!r}: {detail}; reloading it")
            self.board.set(model, ModelState.BROKEN, detail)
            self._died.add(model)
        if watch.due is None or watch.reason is not Reason.DIED:
            watch.due, watch.reason = self.clock(), Reason.DIED

    def _retire(self, model: str, watch: WatchedModel, live: frozenset[int]) -> None:
        """End the survivors a successful reload replaced, once ``RETIRE_AFTER_S`` passed."""
        if watch.retire_at is None or self.clock() < watch.retire_at:
            return
        ending = sorted(watch.replaced & live)
        watch.replaced, watch.retire_at = frozenset(), None
        for pid in ending:
            log(f"model {model!r}: ending stub {pid}, a survivor its reload replaced")
            self.end_stub(pid)

    def _schedule_version_changes(self) -> None:
        """Schedule a reload of each model whose version folders changed (none left: no)."""
        if self.list_versions is None or self._versions is None:
            return
        for model, on_disk in self.list_versions().items():
            before = self._versions.get(model)
            if before is None or on_disk == before or not on_disk:
                continue  # a model added later is not ours to load; an empty one cannot be
            self._versions[model] = on_disk
            watch = self._watches.get(model)
            log(
                f"model {model!r}: versions {sorted(before, key=int)} -> "
                f"{sorted(on_disk, key=int)} on disk; loading the latest"
            )
            if watch is None:  # an ensemble: it has no stub to watch, only versions
                watch = self._watches[model] = WatchedModel()
            if watch.running:  # it may load what was there before: once more when it ends
                watch.disk_moved = True
            elif watch.reason is not Reason.DIED:  # that reload loads what is on disk anyway
                # Now, and from a clean slate: the folders that failed may have been fixed.
                watch.due, watch.reason, watch.failures = self.clock(), Reason.VERSIONS, 0

    def _start_due_reloads(self) -> None:
        for model, watch in self._watches.items():
            if watch.running or watch.due is None or self.clock() < watch.due:
                continue
            if self._stop.is_set():
                return
            watch.running = True
            if watch.reason is Reason.DIED:
                watch.replaced, watch.retire_at = watch.pids, None  # what is live: survivors
                self.board.set(model, ModelState.RELOADING, "reloading after its stub died")
            self.run(lambda m=model, w=watch: self._reload(m, w), f"reload-{model}")

    def _reload(self, model: str, watch: WatchedModel) -> None:
        """Run one reload (in its own thread) and leave its outcome for the next look."""
        started, error = self.clock(), ""
        try:
            self.reload_model(model)
        except (D2TritonError, OSError) as failure:  # Triton refused, or is gone
            error = str(failure)
        except Exception:  # a bug must not end the watchdog: logged, then retried
            error = traceback.format_exc()
        outcome = Reload(model, not error, started, self.clock(), watch.reason.value, error)
        with self._reloads:
            watch.outcome = outcome
            self._reloads.notify_all()

    def _take_outcomes(self) -> None:
        """Record each finished reload; one that ran while the folders changed runs again."""
        for model, watch in self._watches.items():
            with self._reloads:
                outcome, watch.outcome = watch.outcome, None
            if outcome is None:
                continue
            watch.running = False
            self.reloads.append(outcome)
            self._follow_up(model, watch, outcome)
            if watch.disk_moved:
                watch.disk_moved, watch.failures = False, 0
                watch.due, watch.reason = self.clock(), watch.reason or Reason.VERSIONS

    def _follow_up(self, model: str, watch: WatchedModel, outcome: Reload) -> None:
        """Done after a success or a refused version; a death's failed reload is retried."""
        if outcome.succeeded:
            log(f"model {model!r} reloaded in {outcome.seconds:.1f} s ({outcome.reason})")
            watch.failures, watch.due, watch.reason = 0, None, None
            if watch.replaced:
                watch.retire_at = self.clock() + RETIRE_AFTER_S
            return
        error = outcome.error.strip()
        if outcome.reason == Reason.VERSIONS.value:  # Triton serves the versions it had
            watch.due = watch.reason = None
            log(f"loading {model!r} failed ({error}); tried again when its folders change")
            return
        retry = min(LAST_RETRY_S, FIRST_RETRY_S * 2**watch.failures)
        watch.failures += 1
        watch.due = self.clock() + retry
        log(f"reloading {model!r} failed ({error}); again in {retry:.0f} s")
        detail = f"reload failed {watch.failures}x, next try in {retry:.0f} s"
        self.board.set(model, ModelState.BROKEN, detail)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # logged whole; the next look runs (a stuck one: ``stalled``)
                self.tick_errors += 1
                log(f"the watchdog's look failed; it goes on:\n{traceback.format_exc()}")
