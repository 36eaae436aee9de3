"""The reload watchdog, one look at a time: a scripted process table, clock and reloads.

Three pipelines (``default``, ``int8``, ``keypoints``) of three watched models each; a reload
is started by the watchdog and finishes when the test says so, as a real one finishes
seconds later in a thread of its own.
"""

from __future__ import annotations

import itertools
import threading

import pytest

from d2_triton.errors import UpstreamError
from d2_triton.names import PipelineNames
from d2_triton.server.health import HealthBoard, ModelState
from d2_triton.server.watchdog import (
    FIRST_RETRY_S,
    LAST_RETRY_S,
    RETIRE_AFTER_S,
    STALLED_AFTER_S,
    ReloadWatchdog,
)

PIPELINES = [PipelineNames(), PipelineNames("int8"), PipelineNames("keypoints")]
READY, RELOADING, BROKEN = ModelState.READY, ModelState.RELOADING, ModelState.BROKEN


class ProcessTable:
    """Stubs by model, pids handed out in turn (or a chosen one, to reuse it), a clock."""

    def __init__(self, failures: int = 0):
        self.now = 0.0
        self._pids = itertools.count(100)
        self.stubs = {m: {next(self._pids)} for p in PIPELINES for m in _watched(p)}
        self.versions: dict[str, set[str]] = {m: {"1"} for m in self.stubs}
        self.failures = failures
        self.started: list[tuple[float, str]] = []  # reloads the watchdog started
        self.queued: list = []  # reloads started, not finished
        self.reads = 0
        self.kill_on_read: dict[int, str] = {}  # the model whose stubs die as read n ends
        self.ended: list[int] = []  # stubs the watchdog ended

    def list_stubs(self) -> dict[str, set[int]]:
        self.reads += 1
        table = {m: set(p) for m, p in self.stubs.items() if p}
        if self.reads in self.kill_on_read:  # dies right after this read
            self.kill(self.kill_on_read.pop(self.reads))
        return table

    def kill(self, model: str) -> None:
        self.stubs[model] = set()

    def spawn(self, model: str, pid: int | None = None) -> int:
        pid = next(self._pids) if pid is None else pid
        self.stubs[model] = {pid}
        return pid

    def reload(self, model: str) -> None:
        if self.failures:
            self.failures -= 1
            raise UpstreamError("Triton did not load it: load refused")
        self.spawn(model)

    def run(self, target, name: str) -> None:
        self.started.append((self.now, name.removeprefix("reload-")))
        self.queued.append(target)

    def finish_reloads(self) -> None:
        while self.queued:
            self.queued.pop(0)()

    def watchdog(self, board: HealthBoard | None = None, versions: bool = False):
        board = board or HealthBoard(PIPELINES, clock=lambda: self.now)
        return ReloadWatchdog(
            self.list_stubs,
            self.reload,
            board,
            (lambda: {m: frozenset(v) for m, v in self.versions.items()}) if versions else None,
            clock=lambda: self.now,
            run=self.run,
            end_stub=self.ended.append,
        )


def _watched(pipeline: PipelineNames) -> tuple[str, str, str]:
    return pipeline.preprocess, pipeline.detector, pipeline.postprocess


def started(table: ProcessTable) -> list[str]:
    return [model for _, model in table.started]


def states(watchdog: ReloadWatchdog) -> dict[str, str]:
    return {p.name: p.state.value for p in watchdog.board.pipelines()}


def test_nothing_happens_while_every_stub_lives():
    table = ProcessTable()
    watchdog = table.watchdog()
    for _ in range(3):
        watchdog.tick()
    assert table.started == [] and watchdog.reloads == []
    assert set(states(watchdog).values()) == {"ready"}


def test_a_dead_stub_is_broken_then_reloading_then_ready_and_its_new_stub_is_watched():
    table = ProcessTable()
    watchdog = table.watchdog()
    watchdog.tick()
    table.kill("int8_detector")
    watchdog.tick()
    assert started(table) == ["int8_detector"]
    assert watchdog.board.model("int8_detector").state is RELOADING
    assert states(watchdog) == {"default": "ready", "int8": "reloading", "keypoints": "ready"}
    assert watchdog.board.model_ready("int8_ensemble").model == "int8_detector"
    assert watchdog.board.model_ready("ensemble") is None
    table.finish_reloads()
    watchdog.tick()
    assert set(states(watchdog).values()) == {"ready"}
    assert [(r.model, r.succeeded, r.reason) for r in watchdog.reloads] == [
        ("int8_detector", True, "died")
    ]
    watchdog.tick()
    assert len(table.started) == 1  # the new stub is the healthy one now
    # Triton keeps the dead instance until it stops: stopping need not wait for it.
    assert watchdog.models_with_dead_instances() == ["int8_detector"]
    table.kill("int8_detector")  # and its death is seen too
    watchdog.tick()
    assert started(table) == ["int8_detector", "int8_detector"]


def test_a_stub_that_dies_between_two_reads_of_the_process_table_is_reloaded():
    """The launcher's old bug: it found deaths in one read and remembered the stubs of a
    later one, so a stub that died in between was forgotten (issue 33)."""
    table = ProcessTable()
    watchdog = table.watchdog()
    watchdog.tick()
    for later in (1, 2, 3):  # dies right after the first, second or third read from now
        read = table.reads + later
        table.kill_on_read[read] = "int8_detector"
        for _ in range(5):
            watchdog.tick()
            table.finish_reloads()
        assert started(table)[-1:] == ["int8_detector"], f"death after read {read} missed"
        table.started.clear()


def test_stubs_of_several_pipelines_dying_together_are_reloaded_at_once():
    table = ProcessTable()
    watchdog = table.watchdog()
    watchdog.tick()
    table.kill("detector")
    table.kill("int8_preprocess")
    watchdog.tick()
    assert sorted(started(table)) == ["detector", "int8_preprocess"]
    assert states(watchdog) == {"default": "reloading", "int8": "reloading", "keypoints": "ready"}


def test_a_stub_killed_during_another_models_reload_is_seen_at_the_next_look():
    table = ProcessTable()
    watchdog = table.watchdog()
    watchdog.tick()
    table.kill("detector")
    watchdog.tick()  # the detector's reload is running (20 s, say)
    table.now += 1
    table.kill("keypoints_postprocess")
    watchdog.tick()
    assert started(table) == ["detector", "keypoints_postprocess"]
    assert watchdog.board.model("keypoints_postprocess").state is RELOADING
    table.finish_reloads()
    watchdog.tick()
    assert set(states(watchdog).values()) == {"ready"}


def test_a_model_killed_during_its_own_reload_or_right_after_it_is_reloaded_again():
    table = ProcessTable()
    watchdog = table.watchdog()
    watchdog.tick()
    table.kill("detector")
    watchdog.tick()
    table.finish_reloads()
    table.kill("detector")  # its new stub dies before the watchdog has looked at it
    watchdog.tick()
    assert started(table) == ["detector", "detector"]
    assert "after its reload" in watchdog.board.model("detector").detail or (
        watchdog.board.model("detector").state is RELOADING
    )
    table.finish_reloads()
    watchdog.tick()
    assert watchdog.board.model("detector").state is READY
    assert [r.succeeded for r in watchdog.reloads] == [True, True]


def test_a_reused_pid_does_not_hide_a_death():
    """pid_max is 32768 on small machines: a pid comes back within a long test run."""
    table = ProcessTable()
    watchdog = table.watchdog()
    watchdog.tick()
    old = next(iter(table.stubs["preprocess"]))
    table.kill("preprocess")
    watchdog.tick()
    table.finish_reloads()
    watchdog.tick()
    table.kill("int8_preprocess")
    table.spawn("int8_detector", pid=old)  # another model's stub now has the dead one's pid
    watchdog.tick()
    assert started(table) == ["preprocess", "int8_preprocess"]
    table.finish_reloads()
    watchdog.tick()
    table.kill("int8_detector")  # the stub on the reused pid is watched like any other
    watchdog.tick()
    assert started(table)[-1] == "int8_detector"


def test_a_model_of_two_instances_losing_one_is_reloaded():
    table = ProcessTable()
    table.stubs["detector"] = {1, 2}
    watchdog = table.watchdog()
    watchdog.tick()
    table.stubs["detector"] = {2}
    watchdog.tick()
    assert started(table) == ["detector"]


def two_instances_one_reloaded(table: ProcessTable, watchdog: ReloadWatchdog) -> None:
    """int8_detector runs stubs 1 and 2; 1 dies; the reload starts 10 and 11 beside 2."""
    table.stubs["int8_detector"] = {1, 2}
    watchdog.tick()
    table.stubs["int8_detector"] = {2}
    watchdog.tick()
    table.finish_reloads()
    table.stubs["int8_detector"] = {2, 10, 11}  # Triton keeps the survivor's generation
    watchdog.tick()


def test_a_deaths_survivor_is_ended_once_the_reload_replaced_it_and_its_requests_ended():
    table = ProcessTable()
    watchdog = table.watchdog()
    two_instances_one_reloaded(table, watchdog)
    assert set(states(watchdog).values()) == {"ready"} and table.ended == []
    table.now += RETIRE_AFTER_S - 1
    watchdog.tick()
    assert table.ended == []  # it may still be answering what it had before the swap
    table.now += 1
    watchdog.tick()
    assert table.ended == [2]
    table.stubs["int8_detector"] = {10, 11}
    watchdog.tick()
    assert set(states(watchdog).values()) == {"ready"}
    assert started(table) == ["int8_detector"]  # its end was no death


def test_a_survivor_does_not_hide_a_death_of_the_stubs_that_replaced_it():
    table = ProcessTable()
    watchdog = table.watchdog()
    two_instances_one_reloaded(table, watchdog)
    table.stubs["int8_detector"] = {2, 11}  # 10 dies: 2 live stubs, but 1 of the 2 serving
    watchdog.tick()
    assert started(table) == ["int8_detector", "int8_detector"]
    assert watchdog.board.model("int8_detector").state is RELOADING


def test_stubs_that_appear_after_start_are_never_mistaken_for_deaths():
    """A reload's replaced stub lingers beside the new one, then exits: not a death."""
    table = ProcessTable()
    watchdog = table.watchdog(versions=True)
    watchdog.tick()
    table.versions["detector"] = {"1", "2"}
    watchdog.tick()
    assert started(table) == ["detector"]
    assert watchdog.board.model("detector").state is READY  # version 1 serves meanwhile
    lingering = table.stubs["detector"]
    table.finish_reloads()
    table.stubs["detector"] |= lingering
    watchdog.tick()
    table.stubs["detector"] -= lingering  # it exits
    for _ in range(3):
        watchdog.tick()
    assert started(table) == ["detector"]
    assert [(r.model, r.reason) for r in watchdog.reloads] == [("detector", "versions")]


def test_failed_reloads_are_retried_with_back_off_while_the_pipeline_is_broken():
    table = ProcessTable(failures=5)
    watchdog = table.watchdog()
    watchdog.tick()
    table.kill("detector")
    seen = set()
    for _ in range(400):  # 200 s in half-second looks
        watchdog.tick()
        table.finish_reloads()
        seen.add(watchdog.board.model("detector").state)
        table.now += 0.5
    times = [t for t, _ in table.started]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps == pytest.approx([min(LAST_RETRY_S, FIRST_RETRY_S * 2**n) for n in range(5)], abs=1)
    assert [r.succeeded for r in watchdog.reloads] == [False] * 5 + [True]
    assert seen == {READY, RELOADING, BROKEN}
    assert watchdog.board.model("detector").state is READY


def test_a_reload_that_raises_anything_is_a_failed_reload_not_a_dead_watchdog():
    table = ProcessTable()
    table.reload = lambda model: {}["no such key"]  # a bug, not a refusal
    watchdog = table.watchdog()
    watchdog.tick()
    table.kill("postprocess")
    watchdog.tick()
    table.finish_reloads()
    watchdog.tick()
    assert [r.succeeded for r in watchdog.reloads] == [False]
    assert "KeyError" in watchdog.reloads[0].error
    assert watchdog.board.model("postprocess").state is BROKEN


def test_a_stopping_watchdog_reloads_nothing():
    table = ProcessTable()
    watchdog = table.watchdog()
    watchdog.tick()
    watchdog.request_stop()
    table.kill("detector")  # the server shutting down looks like dying stubs
    watchdog.tick()
    assert table.started == []


def test_stopping_waits_for_a_reload_in_flight_then_for_no_more_than_its_limit():
    # Triton told to stop during a load unloads nothing until the load ends, then waits its
    # exit timeout: the launcher lets the reload end first (the chaos test's last stop).
    table = ProcessTable()
    watchdog = table.watchdog()
    watchdog.tick()
    table.kill("postprocess")
    watchdog.tick()
    stopper = threading.Thread(target=lambda: watchdog.stop(reloads_timeout=60))
    stopper.start()
    stopper.join(0.5)
    assert stopper.is_alive(), "stop did not wait for the reload in flight"
    table.finish_reloads()
    stopper.join(10)
    assert not stopper.is_alive()
    table = ProcessTable()  # a reload that never ends
    watchdog = table.watchdog()
    watchdog.tick()
    table.kill("detector")
    watchdog.tick()
    stopper = threading.Thread(target=lambda: watchdog.stop(reloads_timeout=0.2))
    stopper.start()
    stopper.join(10)
    assert not stopper.is_alive(), "stop waited past its limit"


def test_a_new_version_folder_loads_the_model_again_and_removing_it_rolls_back():
    table = ProcessTable()
    watchdog = table.watchdog(versions=True)
    watchdog.tick()
    table.versions["detector"] = {"1", "2"}
    watchdog.tick()
    table.finish_reloads()
    watchdog.tick()
    table.versions["detector"] = {"1"}
    watchdog.tick()
    table.finish_reloads()
    watchdog.tick()
    assert [(r.model, r.succeeded) for r in watchdog.reloads] == [("detector", True)] * 2


def test_a_model_without_versions_or_a_new_model_is_left_alone():
    table = ProcessTable()
    watchdog = table.watchdog(versions=True)
    watchdog.tick()
    table.versions["detector"] = set()  # nothing Triton could load
    table.versions["other_detector"] = {"1"}  # appeared after the start
    for _ in range(3):
        watchdog.tick()
    assert table.started == []


def test_a_look_that_raises_is_logged_and_the_next_one_runs(capfd):
    table = ProcessTable()
    reads = iter([None, RuntimeError("no /proc today")])

    def flaky():
        error = next(reads, None)
        if error is not None:
            raise error
        return table.list_stubs()

    board = HealthBoard(PIPELINES)
    watchdog = ReloadWatchdog(flaky, table.reload, board, interval=0.01, run=table.run)
    watchdog.start()
    try:
        ticked = threading.Event()
        for _ in range(500):
            if watchdog.tick_errors == 1 and table.reads > 3:
                ticked.set()
                break
            threading.Event().wait(0.01)
        assert ticked.is_set(), "the watchdog stopped looking after a failed look"
        assert not watchdog.stalled()
    finally:
        watchdog.stop()
    assert "RuntimeError: no /proc today" in capfd.readouterr().err


def test_a_watchdog_whose_look_hangs_is_stalled():
    table = ProcessTable()
    release = threading.Event()
    reads = itertools.count()

    def hanging():
        if next(reads) > 0:  # the first read learns the stubs; the first look hangs
            release.wait()
        return table.list_stubs()

    watchdog = ReloadWatchdog(
        hanging, table.reload, HealthBoard(PIPELINES), interval=0.01, clock=lambda: table.now
    )
    watchdog.start()
    try:
        assert not watchdog.stalled()
        table.now += STALLED_AFTER_S + 1
        assert watchdog.stalled()
    finally:
        release.set()
        watchdog.stop()
    assert not watchdog.stalled()  # a stopped watchdog is not stuck


def test_a_refused_version_is_not_retried_until_its_folders_change():
    """A broken version's load is not tried again on a timer (the same files fail the same
    way, and a retry in flight while the operator removes the folder hung Triton 2.51's load
    for ever, in CI); taking it out (or putting a fixed one in) is loaded at once."""
    table = ProcessTable(failures=1)
    watchdog = table.watchdog(versions=True)
    watchdog.tick()
    table.versions["detector"] = {"1", "2"}  # version 2 is broken
    watchdog.tick()
    table.finish_reloads()
    watchdog.tick()  # takes the failure
    assert [r.succeeded for r in watchdog.reloads] == [False]
    for _ in range(5):
        table.now += LAST_RETRY_S
        watchdog.tick()
    assert started(table) == ["detector"], "the refused version was loaded again"
    assert states(watchdog)["default"] == "ready"  # Triton serves version 1 on
    table.now += 1.0
    table.versions["detector"] = {"1"}  # the operator takes it out
    watchdog.tick()
    assert table.started[-1] == (table.now, "detector")  # at once
    table.finish_reloads()
    watchdog.tick()
    assert [r.succeeded for r in watchdog.reloads] == [False, True]


@pytest.mark.parametrize("succeeds", [True, False])
def test_folders_that_change_during_a_reload_are_loaded_once_it_ends(succeeds):
    """Triton picks the versions when a load starts: a version moved in (or out) while one
    ran must be loaded by another, whatever became of the first."""
    table = ProcessTable(failures=0 if succeeds else 1)
    watchdog = table.watchdog(versions=True)
    watchdog.tick()
    table.versions["detector"] = {"1", "2"}
    watchdog.tick()  # loading version 2
    table.versions["detector"] = {"1", "2", "3"}  # the next export lands meanwhile
    watchdog.tick()
    assert started(table) == ["detector"]  # one load of a model at a time
    table.finish_reloads()
    watchdog.tick()
    assert started(table) == ["detector", "detector"], "version 3 was never loaded"
    table.finish_reloads()
    watchdog.tick()
    assert [r.succeeded for r in watchdog.reloads] == [succeeds, True]
