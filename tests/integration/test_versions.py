"""A new model version goes live, and is rolled back, under load, losing no request.

The repository holds the test Faster R-CNN twice: detector version 1 (seed 0) and version 2
(seed 1), the second exported into the first's repository by the real CLI (both with the
plumbing options, served at the plumbing size: ``helpers.exports.PLUMBING_OPTIONS``,
``PLUMBING_SIZE``).
The server starts with version 2 held outside the repository; the launcher's watcher loads
it when it is moved in (as the exporter's final rename does), which gives version 2's
answers.  Then, under load, it goes back to version 1 when version 2 is moved out (the
documented rollback) and on to version 2 when it is moved in again.  Four clients keep
sending good and bad images throughout: none may fail, and every answer must be one whole
version's answer.  Then a version with broken files appears: its load fails, version 2
answers on and the server stays ready.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from d2_triton.server.processes import stub_pids
from d2_triton.testing.corpus import mixed_cases
from d2_triton.testing.load import LoadReport, reference_answers, run_load, same_answer
from export_tools.repository.derive import derive
from helpers.exports import ARCHITECTURES, plumbing_overrides, two_version_repository

CLIENTS = 4
# Good answers each version must give, after its switch, before the next step.
ANSWERS_PER_STEP = 6
# Hang catchers only: a reload takes ~5 s here, an answer well under a second.
RELOAD_LIMIT_S = 300
LOAD_LIMIT_S = 900
CLIENT_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """The two-version export at a reduced input size, with version 2 held outside."""
    work = tmp_path_factory.mktemp("versions")
    source = two_version_repository(ARCHITECTURES["faster_rcnn"])
    served = derive(source, work / "models", plumbing_overrides())
    (work / "held").mkdir()
    (served / "detector" / "2").rename(work / "held" / "2")
    return served


STEPS = ("remove", "add")  # version 2 is in when the load starts


class Switcher:
    """Moves version 2 into the repository and out again as the answers come in.

    Called (as ``run_load``'s ``until``) before every request: once the last step's reload
    is done and ANSWERS_PER_STEP good answers were sent after it, it takes the next step;
    True when the last one is done.  ``moved_at``: when each step's rename happened;
    ``switched_at``: when the watcher's reload that followed it finished.
    """

    def __init__(self, server, version_2: Path, held: Path):
        self.server = server
        self.version_2 = version_2
        self.held = held
        self.earlier_reloads = len(server.watchdog.reloads)
        self.moved_at: list[float] = []
        self.switched_at: list[float] = []

    def __call__(self, report: LoadReport) -> bool:
        reloads = self.server.watchdog.reloads[self.earlier_reloads :]
        self.switched_at = [reload.finished_at for reload in reloads if reload.succeeded]
        if len(self.switched_at) < len(self.moved_at):
            return False  # the last step is not live yet
        since = self.switched_at[-1] if self.switched_at else 0.0
        answered = [r for r in report.timeline if r.outcome == "good_ok" and r.started > since]
        if len(answered) < ANSWERS_PER_STEP:
            return False
        if len(self.moved_at) == len(STEPS):
            return True
        if STEPS[len(self.moved_at)] == "add":
            self.held.rename(self.version_2)
        else:
            self.version_2.rename(self.held)
        self.moved_at.append(time.monotonic())
        return False


def wait_for_reloads(server, count: int) -> None:
    deadline = time.monotonic() + RELOAD_LIMIT_S
    while len([r for r in server.watchdog.reloads if r.succeeded]) < count:
        assert time.monotonic() < deadline, "the detector was not reloaded"
        time.sleep(0.5)


def ready_again(server) -> bool:
    """Ready within RELOAD_LIMIT_S (a hang catcher).

    Triton 2.51 unloads a removed version in the background; seen here, the rolled-back
    version was still unloading when the load ended and the ready check answered no.  A
    server that never comes back ready still fails.
    """
    deadline = time.monotonic() + RELOAD_LIMIT_S
    while not server.is_ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_a_new_version_goes_live_and_back_under_load_losing_no_request(server_pool, repository):
    server_pool.stop()
    server = server_pool.start(repository, "versions")  # its own: its models get reloaded
    version_2, held = repository / "detector" / "2", repository.parent / "held" / "2"
    try:
        cases = mixed_cases()
        # Each version's answers, asked alone; the watcher's reload switches between them.
        first = reference_answers(server.http_url, cases)
        held.rename(version_2)
        wait_for_reloads(server, 1)
        second = reference_answers(server.http_url, cases)
        differing = [name for name in first if not same_answer(first[name], second[name])]
        assert len(differing) >= 3, "the two versions must answer differently to tell them apart"

        switcher = Switcher(server, version_2, held)
        stubs_before = stub_pids(server.process.pid)
        report = run_load(
            server.http_url,
            cases,
            {name: (first[name], second[name]) for name in first},
            CLIENTS,
            until=switcher,
            deadline=time.monotonic() + LOAD_LIMIT_S,
            timeout=CLIENT_TIMEOUT_S,
        )
        versions = [r.answer for r in report.timeline if r.outcome == "good_ok"]
        print(
            json.dumps(
                {
                    **report.summary(),
                    "moved_at": switcher.moved_at,
                    "switched_at": switcher.switched_at,
                    "reloads": [
                        (r.model, r.succeeded, round(r.seconds, 1)) for r in server.watchdog.reloads
                    ],
                    "answers_by_version": {
                        "1": versions.count(0),
                        "2": versions.count(1),
                        "either": versions.count(None),
                    },
                },
                indent=2,
            )
        )
        assert len(switcher.switched_at) == len(STEPS), "version 2 did not go live and back"
        removed, added = switcher.switched_at
        assert report.good_failed == 0 and report.bad_unexpected == 0, report.failures[:5]
        assert report.wrong_answers == 0, report.failures[:5]  # each answer one whole version's
        # Once a switch had finished, only its version answered (until the next move).
        moved_in = switcher.moved_at[1]
        between = [r.answer for r in report.timeline if removed < r.started and r.ended < moved_in]
        after = [r.answer for r in report.timeline if r.started > added]
        assert 0 in between and 1 not in between, between  # version 1: rolled back
        assert 1 in after and 0 not in after, after  # version 2 again
        assert stub_pids(server.process.pid)["preprocess"] == stubs_before["preprocess"]
        assert ready_again(server), "the server did not come back ready after the switches"
        a_broken_version_is_refused_and_the_last_good_one_serves(server, repository, second)
    finally:
        server_pool.retire(server)


def a_broken_version_is_refused_and_the_last_good_one_serves(server, repository, serving):
    """A version whose files are broken (a copy that went wrong) appears beside versions 1
    and 2: its load fails, and is said so (log, a failed reload), while version 2 answers on
    (``serving``) and the server stays ready; removing it is a reload like any other."""
    broken = repository / "detector" / "3"
    partial = repository / "detector" / ".partial-3"
    shutil.copytree(repository / "detector" / "1", partial, copy_function=os.link)
    stage = max(partial.glob("*.bin"), key=lambda path: path.stat().st_size)
    stage.unlink()  # a file of its own: version 1's stays whole
    stage.write_bytes(b"not an OpenVINO weights file")
    reloads = len(server.watchdog.reloads)
    partial.rename(broken)
    deadline = time.monotonic() + RELOAD_LIMIT_S
    while not [r for r in server.watchdog.reloads[reloads:] if r.reason == "versions"]:
        assert time.monotonic() < deadline, "the broken version was never tried"
        time.sleep(0.5)
    failed = server.watchdog.reloads[reloads]
    assert not failed.succeeded and "version 3" in failed.error, failed
    answers = reference_answers(server.http_url, mixed_cases())
    assert all(same_answer(answers[name], answer) for name, answer in serving.items())
    # Not tried again while unchanged: a retry in flight when the folder goes hangs Triton.
    assert len(server.watchdog.reloads) == reloads + 1, server.watchdog.reloads[reloads:]
    assert server.is_ready()  # it serves: Triton's strict readiness alone would say no
    shutil.rmtree(broken)
    wait_for_reloads(server, len([r for r in server.watchdog.reloads if r.succeeded]) + 1)
    assert ready_again(server)
