"""The reload watchdog's transitions, one tick at a time, with a fake process table and clock."""

from __future__ import annotations

import itertools
import urllib.error

import pytest

from d2_triton.server.watchdog import FIRST_RETRY_S, LAST_RETRY_S, ReloadWatchdog


class FakeServer:
    """Stubs by model, a clock, and reloads that fail ``failures`` times before working."""

    def __init__(self, failures: int = 0):
        self.stubs = {"preprocess": {10}, "detector": {11}, "postprocess": {12}}
        self.now = 0.0
        self.failures = failures
        self.calls: list[tuple[float, str]] = []
        self._next_pid = 100

    def reload(self, model: str) -> None:
        self.calls.append((self.now, model))
        if self.failures:
            self.failures -= 1
            raise urllib.error.URLError("load refused")
        self._next_pid += 1
        self.stubs[model] = {self._next_pid}

    def watchdog(self) -> ReloadWatchdog:
        return ReloadWatchdog(
            lambda: {m: set(p) for m, p in self.stubs.items()}, self.reload, clock=lambda: self.now
        )


def test_nothing_happens_while_every_stub_lives():
    server = FakeServer()
    watchdog = server.watchdog()
    for _ in range(3):
        watchdog.tick()
    assert server.calls == [] and watchdog.reloads == []


def test_a_dead_stub_gets_its_model_reloaded_once_and_the_new_stub_is_watched():
    server = FakeServer()
    watchdog = server.watchdog()
    watchdog.tick()
    del server.stubs["detector"]
    watchdog.tick()
    assert server.calls == [(0.0, "detector")]
    assert [(r.model, r.succeeded) for r in watchdog.reloads] == [("detector", True)]
    watchdog.tick()
    assert len(server.calls) == 1  # the new stub is known: no second reload
    server.stubs["detector"] = set()  # the new one dies too
    watchdog.tick()
    assert [model for _, model in server.calls] == ["detector", "detector"]


def test_a_zombie_counts_as_dead():
    """live_stubs leaves zombies out, so a zombie is a missing pid here."""
    server = FakeServer()
    watchdog = server.watchdog()
    watchdog.tick()
    server.stubs["postprocess"] = set()
    watchdog.tick()
    assert server.calls == [(0.0, "postprocess")]


def test_failed_reloads_are_retried_with_back_off_until_one_succeeds():
    server = FakeServer(failures=5)
    watchdog = server.watchdog()
    watchdog.tick()
    del server.stubs["detector"]
    for _ in range(400):  # 200 s in half-second ticks
        watchdog.tick()
        server.now += 0.5
    times = [t for t, _ in server.calls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    expected = [min(LAST_RETRY_S, FIRST_RETRY_S * 2**n) for n in range(5)]
    assert gaps == pytest.approx(expected, abs=0.5)
    assert [r.succeeded for r in watchdog.reloads] == [False] * 5 + [True]
    watchdog.tick()
    assert len(server.calls) == 6  # done: the new stub is watched, nothing pending


def test_two_models_dying_together_are_both_reloaded():
    server = FakeServer()
    watchdog = server.watchdog()
    watchdog.tick()
    server.stubs["preprocess"] = set()
    server.stubs["postprocess"] = set()
    watchdog.tick()
    assert sorted(model for _, model in server.calls) == ["postprocess", "preprocess"]


def test_a_stopping_watchdog_reloads_nothing():
    server = FakeServer()
    watchdog = server.watchdog()
    watchdog.tick()
    watchdog.request_stop()
    del server.stubs["detector"]  # the server shutting down looks like dying stubs
    watchdog.tick()
    assert server.calls == []


class VersionedServer(FakeServer):
    """Also has version folders; a reload leaves the replaced stub running for a while."""

    def __init__(self):
        super().__init__()
        self.versions = {"preprocess": {"1"}, "detector": {"1"}, "postprocess": {"1"}}
        self.lingering: set[int] = set()

    def reload(self, model: str) -> None:
        self.lingering |= self.stubs[model]
        super().reload(model)
        self.stubs[model] |= self.lingering  # the old stub exits only later

    def watchdog(self) -> ReloadWatchdog:
        return ReloadWatchdog(
            lambda: {m: set(p) for m, p in self.stubs.items()},
            self.reload,
            lambda: {m: frozenset(v) for m, v in self.versions.items()},
            clock=lambda: self.now,
        )


def test_a_new_version_folder_loads_the_model_again_and_removing_it_rolls_back():
    server = VersionedServer()
    watchdog = server.watchdog()
    watchdog.tick()
    server.versions["detector"] = {"1", "2"}  # an export added version 2
    watchdog.tick()
    assert [model for _, model in server.calls] == ["detector"]
    server.stubs["detector"] -= server.lingering  # the replaced stub exits: not a death
    watchdog.tick()
    watchdog.tick()
    assert len(server.calls) == 1
    server.versions["detector"] = {"1"}  # rolled back
    watchdog.tick()
    assert [model for _, model in server.calls] == ["detector", "detector"]
    assert [(r.model, r.succeeded) for r in watchdog.reloads] == [("detector", True)] * 2


def test_a_model_without_versions_or_a_new_model_is_left_alone():
    server = VersionedServer()
    watchdog = server.watchdog()
    watchdog.tick()
    server.versions["detector"] = set()  # nothing Triton could load
    server.versions["keypoints_detector"] = {"1"}  # appeared after the start
    for _ in range(3):
        watchdog.tick()
    assert server.calls == []
