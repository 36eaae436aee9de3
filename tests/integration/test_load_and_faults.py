"""Sustained, mixed load: no failed or wrong answers, flat memory, and what happens when a
Python-backend stub dies under load.

The server here serves the test Mask R-CNN at a reduced input resolution (short edge 320),
so each image costs a fraction of a second on 2 cores and the tests can send many.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from benchmarks.load import reference_answers, run_load
from benchmarks.soak import load_repository, soak_cases
from d2_triton.processes import stub_pids
from helpers.exports import CACHE, REPO_ROOT

CLIENTS = 16
REQUESTS_PER_CLIENT = 6


@pytest.fixture(scope="module")
def fast_repository(mask_rcnn_repository):
    return load_repository(mask_rcnn_repository, CACHE / "load-repository", 320, 533)


@pytest.fixture(scope="module")
def fast_server(server_pool, fast_repository):
    return server_pool.get(fast_repository, "load")


@pytest.fixture(scope="module")
def cases():
    return soak_cases()


def test_concurrent_mixed_load_has_no_failures_and_no_wrong_answers(fast_server, cases):
    stubs = stub_pids(fast_server.process.pid)
    references = reference_answers(fast_server.http_url, cases)
    report = run_load(fast_server.http_url, cases, references, CLIENTS, REQUESTS_PER_CLIENT)
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    assert report.requests == CLIENTS * REQUESTS_PER_CLIENT
    assert report.clean, summary["first_failures"]
    assert report.good_ok > 20 and report.bad_rejected > 10
    assert fast_server.is_ready()
    assert stub_pids(fast_server.process.pid) == stubs


def soak(repository, out, duration_s: int, clients: int) -> dict:
    """Run the soak script (its own server) and check what it measured."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--repository", str(repository),
         "--duration", str(duration_s), "--clients", str(clients), "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((out / "soak.json").read_text())
    assert figures["load"]["good_failed"] == figures["load"]["wrong_answers"] == 0
    # Flat: after warm-up, the floor of total RSS (server + 3 stubs, ~1.6 GB; per-request
    # tensors add spikes above it) grows by less than 1%/min and 48 MiB in all.
    assert len(figures["rss_floors_mib"]) >= 4, figures
    assert figures["growth_mib_per_minute_after_warmup"] < 16, figures
    assert figures["rss_floor_mib_end"] - figures["rss_floor_mib_after_warmup"] < 48, figures
    assert (out / "memory.png").read_bytes()[:4] == b"\x89PNG"
    return figures


def test_soak_memory_stays_flat(tmp_path, server_pool, mask_rcnn_repository):
    """A short soak; the long one is opt-in (pytest -m slow)."""
    server_pool.stop()
    figures = soak(mask_rcnn_repository, tmp_path / "soak", duration_s=75, clients=8)
    assert figures["load"]["requests"] > 100


@pytest.mark.slow
def test_long_soak_memory_stays_flat(tmp_path, server_pool, mask_rcnn_repository):
    """Ten minutes, 16 clients (python -m benchmarks.soak --duration 600 does the same)."""
    server_pool.stop()
    figures = soak(mask_rcnn_repository, tmp_path / "soak", duration_s=600, clients=16)
    assert figures["load"]["requests"] > 800


def test_a_killed_stub_gives_errors_not_hangs_and_service_resumes(
    server_pool, fast_repository, cases
):
    """SIGKILL the detector's stub under load.  Triton 2.51 neither restarts it nor marks the
    model unready: requests fail with "Stub process ... is not healthy".  The launcher's
    watchdog (d2_triton.server.StubWatchdog) reloads the model; service resumes."""
    server_pool.stop()
    server = server_pool.start(fast_repository, "fault")  # a server of its own: it gets hurt
    try:
        references = reference_answers(server.http_url, cases)
        victim = stub_pids(server.process.pid)["detector"]
        killed_at = []

        def kill_the_detector_stub() -> None:
            time.sleep(3.0)
            os.kill(victim, signal.SIGKILL)
            killed_at.append(time.monotonic())

        killer = threading.Thread(target=kill_the_detector_stub)
        killer.start()
        report = run_load(server.http_url, cases, references, clients=4,
                          deadline=time.monotonic() + 30, timeout=60)  # fmt: skip
        killer.join()
        failed = [t - killed_at[0] for t, outcome in report.timeline if outcome == "good_failed"]
        print(json.dumps({
            "requests": report.requests, "good_ok": report.good_ok,
            "good_failed": report.good_failed, "bad_rejected": report.bad_rejected,
            "failed_from_s": min(failed, default=None), "failed_until_s": max(failed, default=None),
            "reloads": server.watchdog.reloads, "first_failures": report.failures[:3],
        }, indent=2))  # fmt: skip
        # Errors, not hangs: every request ended long before its 60 s timeout, and only
        # requests that needed the detector around the kill failed, each saying why.
        assert max(report.latencies_ms) < 30_000
        assert failed and all(-1.0 < t < 20.0 for t in failed), failed
        assert all(("not healthy" in f) or ("ensemble" in f) for f in report.failures), (
            report.failures[:5]
        )
        assert report.wrong_answers == 0 and report.bad_unexpected == 0
        # Service resumed: the watchdog reloaded the detector (a new stub), and everything
        # after the last failure succeeded.
        assert [(model, ok) for model, ok, _ in server.watchdog.reloads] == [("detector", True)]
        assert stub_pids(server.process.pid)["detector"] != victim
        recovered = [o for t, o in report.timeline if t - killed_at[0] > max(failed)]
        assert recovered.count("good_ok") >= 5 and "good_failed" not in recovered
        assert server.is_ready()
    finally:
        server.stop()
