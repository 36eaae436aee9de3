"""Fixtures shared by the unit and integration tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from d2_triton.cache import cache_dir
from d2_triton.serving.usage_telemetry import turn_off_openvino_telemetry
from export_tools.repository.derive import derive
from helpers import background
from helpers.exports import (
    ARCHITECTURES,
    CACHE,
    PLUMBING_OPTIONS,
    both_modes_repository,
    exported_repository,
    plumbing_overrides,
)
from helpers.parity import MEASURED
from helpers.photos import write_photos
from helpers.servers import GatewayProcess, ServerPool

REPORT_DIR = cache_dir() / "reports"
# This process exports in-process (helpers.exports) and its unit tests import OpenVINO before
# the first export does; the export CLI and the background process turn it off in export(),
# the stubs in d2_triton.serving.backend.initialize.
turn_off_openvino_telemetry()


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def server_pool(tmp_path_factory):
    pool = ServerPool(tmp_path_factory.mktemp("server-logs"))
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def mask_rcnn_repository() -> Path:
    return exported_repository(ARCHITECTURES["mask_rcnn"])


@pytest.fixture(scope="module")
def mask_rcnn_server(server_pool):
    """The default model (Mask R-CNN R50-FPN) served by a real tritonserver.

    Its ``--exact`` export is served beside it (pipeline "exact"), for the parity tests,
    which run next and so need no server of their own for Mask R-CNN.
    """
    return server_pool.get(both_modes_repository(ARCHITECTURES["mask_rcnn"]), "mask_rcnn")


@pytest.fixture(scope="session")
def fast_repository() -> Path:
    """The test Mask R-CNN with fewer proposals and detections, at the plumbing size.

    For the tests of the plumbing around the model (bad and odd inputs, the front, the
    gateway, load, faults, the benchmark smoke): what they check depends neither on the
    input size nor on the number of instances (``helpers.exports.PLUMBING_OPTIONS``), and an
    image costs a fraction of a second instead of ~2.4 s.  The parity and serving tests use
    the export as it is, at Detectron2's size.
    """
    source = exported_repository(ARCHITECTURES["mask_rcnn"], *PLUMBING_OPTIONS)
    return derive(source, CACHE / "fast-repository", plumbing_overrides())


@pytest.fixture(scope="module")
def fast_server(server_pool, fast_repository):
    """``fast_repository`` served by a real tritonserver."""
    return server_pool.get(fast_repository, "fast")


@pytest.fixture(scope="module")
def gateway(fast_server, tmp_path_factory):
    """The REST gateway (a real uvicorn process) in front of ``fast_server``."""
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    with GatewayProcess(fast_server.http_url, log, fast_server.settings.admin_key) as process:
        yield process


# Integration modules in an order that lets neighbours share a server (a start costs ~20 s
# on 2 cores): Mask R-CNN at Detectron2's size, then other repositories, then the plumbing
# tests on the fast server.  Modules not named keep their place after these.
MODULE_ORDER = (
    "test_serving",
    "test_gateway_masks",
    "test_parity",
    "test_pipelines",
    "test_chaos",
    "test_versions",
    "test_benchmark_smoke",
    "test_client_requests",
    "test_wheel",
    "test_bad_inputs",
    "test_front",
    "test_gateway",
    "test_gateway_openapi",
    "test_load_and_faults",
)
# The modules whose models are made in the background (helpers.background: the trained
# model, its exports, the families' exports) run after everything else, in this order: the
# work starts with the session and has until then.
LAST_MODULES = tuple(background.NEEDED_BY)
_background: list[background.BackgroundWork] = []


def _rank(item) -> int:
    name = item.path.stem
    if item.path.parent.name != "integration":
        return len(MODULE_ORDER)
    if name in LAST_MODULES:
        return len(MODULE_ORDER) + 1 + LAST_MODULES.index(name)
    return MODULE_ORDER.index(name) if name in MODULE_ORDER else len(MODULE_ORDER)


def pytest_collection_modifyitems(items) -> None:
    items.sort(key=_rank)  # stable: tests keep their order within a module


def pytest_collection_finish(session) -> None:
    steps = background.steps_for({item.path.stem for item in session.items})
    if steps and not session.config.option.collectonly:
        _background.append(background.BackgroundWork(steps))


def pytest_sessionfinish(session) -> None:
    """End the background work; a step that failed fails the run, even where the test that
    needed its result made it itself."""
    for work in _background:
        status = work.stop()
        if status and session.exitstatus == 0:
            print(f"\nbackground work failed (status {status}): {background.LOG}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """The shapes model's folder, once the background work (started with the session) has
    ended: it trained the model and exported it."""
    assert _background, "the session started no background work (helpers.background.NEEDED_BY)"
    _background[0].wait()
    return background.trained_model()


def pytest_terminal_summary(terminalreporter) -> None:
    if not MEASURED:
        return
    summaries = {key: figures.summary() for key, figures in sorted(MEASURED.items())}
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "parity.json").write_text(json.dumps(summaries, indent=2) + "\n")
    terminalreporter.section("parity with Detectron2 (served over HTTP vs DefaultPredictor)")
    for key, summary in summaries.items():
        terminalreporter.write_line(f"{key}: {json.dumps(summary)}")
