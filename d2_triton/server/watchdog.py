"""Reload a model whose Python-backend stub died, or whose versions changed on disk.

Triton 2.51's Python backend does not restart a stub that dies (a crash, the OOM killer):
every later request to that model fails with "Stub process ... is not healthy" while the
model still reports READY.  The launcher therefore runs tritonserver with explicit model
control (the model-repository API restricted to a per-start secret header) and a
:class:`ReloadWatchdog`: when a model's stub process is gone, the model is reloaded in place,
which starts a new stub.  Requests in flight get errors, never hang; service resumes within
the model's load time (about 7 s for the detector on 2 CPU cores).

The same thread loads new model versions: when a model's numbered version folders change
(an export added ``detector/2``, or an operator removed it to roll back), the model is
loaded again through the same restricted API, and Triton serves its latest version.  Triton
keeps the previous version serving until the new one is ready, so the switch loses no
request.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from d2_triton.names import ADMIN_HEADER, model_version

# Config parameter whose new value makes Triton load an otherwise unchanged config again.
RELOAD_GENERATION_PARAMETER = "d2t_reload_generation"
# Seconds before retrying a failed reload: 5, 10, 20, 40, then 60 at most.
FIRST_RETRY_S = 5.0
LAST_RETRY_S = 60.0


@dataclass(frozen=True)
class Reload:
    """One reload by the watchdog; times are ``time.monotonic()``."""

    model: str
    succeeded: bool
    started_at: float
    finished_at: float

    @property
    def seconds(self) -> float:
        """How long the reload took."""
        return self.finished_at - self.started_at


class ModelReloader:
    """Loads a model again, in place, through Triton's restricted model-repository API.

    Triton skips a load whose config is unchanged, so the served config goes back with one
    more parameter, ``d2t_reload_generation``; the model stays loaded meanwhile, so the
    ensemble never disappears (an unload would make it answer 404 to every request, bad
    ones included, until the load is done).
    """

    def __init__(self, http_url: str, admin_key: str, load_timeout: float = 600.0):
        self.http_url = http_url
        self.admin_key = admin_key
        self.load_timeout = load_timeout
        self._generation = 0

    def __call__(self, model: str) -> None:
        """Reload ``model``; raises URLError or OSError when Triton refuses or is gone."""
        base = f"http://{self.http_url}/v2"
        name = urllib.parse.quote(model)
        with urllib.request.urlopen(f"{base}/models/{name}/config", timeout=30) as response:
            config = json.load(response)
        self._generation += 1
        parameters = config.setdefault("parameters", {})
        parameters[RELOAD_GENERATION_PARAMETER] = {"string_value": str(self._generation)}
        request = urllib.request.Request(
            f"{base}/repository/models/{name}/load",
            data=json.dumps({"parameters": {"config": json.dumps(config)}}).encode(),
            headers={ADMIN_HEADER: self.admin_key},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.load_timeout) as response:
            response.read()


def version_folders(repository: Path) -> dict[str, frozenset[str]]:
    """Model name -> the version folders Triton would load (``schema.model_version``)."""
    return {
        model.name: frozenset(
            version.name
            for version in model.iterdir()
            if version.is_dir() and model_version(version.name) is not None
        )
        for model in repository.iterdir()
        if (model / "config.pbtxt").is_file()
    }


class ReloadWatchdog:
    """Reloads a model whose stub died or whose versions changed; :meth:`tick` is one look.

    A stub seen before and gone now (or a zombie) means its model instance can only fail
    from now on, so the model is reloaded.  A model whose version folders changed (see
    ``version_folders``) is reloaded so that Triton serves its latest version.  A failed
    reload is retried with back-off.  Stubs a reload replaced exit on their own afterwards;
    they are retired, not mourned.  Stop the watchdog before stopping the server, or the
    server's own shutdown looks like dying stubs.

    Args:
        list_stubs: model name -> pids of its live stubs (``processes.live_stubs``).
        reload_model: reloads one model; raises URLError or OSError when that fails.
        list_versions: model name -> its version folders (``version_folders``); None: do
            not watch versions.  Models that appear later are not loaded.
        interval: seconds between two ticks of the background thread.
        clock: the time source (``time.monotonic``; tests pass their own).
    """

    def __init__(
        self,
        list_stubs: Callable[[], dict[str, set[int]]],
        reload_model: Callable[[str], None],
        list_versions: Callable[[], dict[str, frozenset[str]]] | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.list_stubs = list_stubs
        self.reload_model = reload_model
        self.list_versions = list_versions
        self.interval = interval
        self.clock = clock
        self.reloads: list[Reload] = []
        self._known: dict[str, set[int]] | None = None
        self._versions: dict[str, frozenset[str]] | None = None
        self._retired: set[int] = set()  # stubs a reload replaced: they exit on their own
        self._pending: dict[str, tuple[int, float]] = {}  # model -> (failed reloads, due)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stub-watchdog", daemon=True)

    def start(self) -> ReloadWatchdog:
        """Learn the current stubs and start watching them in a background thread."""
        self._known = self.list_stubs()
        if self.list_versions is not None:
            self._versions = self.list_versions()
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the thread to end (safe in a signal handler: it does not wait)."""
        self._stop.set()

    def stop(self) -> None:
        """End the thread and wait for it."""
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join()

    def tick(self) -> None:
        """One look: schedule models that lost a stub or changed versions, reload those due."""
        if self._known is None:
            self._known = self.list_stubs()
        current = self.list_stubs()
        for model, pids in self._known.items():
            lost = pids - current.get(model, set())
            if lost and model not in self._pending:
                log(
                    f"stub of model {model!r} (pid {', '.join(map(str, sorted(lost)))}) "
                    "died; reloading the model"
                )
                self._pending[model] = (0, self.clock())
        self._schedule_version_changes()
        for model, (failures, due) in list(self._pending.items()):
            if self.clock() < due or self._stop.is_set():
                continue
            replaced = self.list_stubs().get(model, set())
            if self._reload(model):
                del self._pending[model]
                self._retired |= replaced
            else:
                retry = min(LAST_RETRY_S, FIRST_RETRY_S * 2**failures)
                self._pending[model] = (failures + 1, self.clock() + retry)
        # Learn the stubs as they are now; a model waiting for its reload is learnt once back.
        self._known = {
            model: pids - self._retired
            for model, pids in self.list_stubs().items()
            if model not in self._pending
        }

    def _schedule_version_changes(self) -> None:
        """Schedule a reload of each model whose version folders changed (none left: no)."""
        if self.list_versions is None:
            return
        versions = self.list_versions()
        if self._versions is None:
            self._versions = versions
            return
        for model, on_disk in versions.items():
            before = self._versions.get(model)
            if before is None or on_disk == before or not on_disk:
                continue  # a model added later is not ours to load; an empty one cannot be
            self._versions[model] = on_disk
            if model not in self._pending:
                log(
                    f"model {model!r}: versions {sorted(before, key=int)} -> "
                    f"{sorted(on_disk, key=int)} on disk; loading the latest"
                )
                self._pending[model] = (0, self.clock())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def _reload(self, model: str) -> bool:
        started = self.clock()
        try:
            self.reload_model(model)
        except (urllib.error.URLError, OSError) as error:
            detail = error.read().decode(errors="replace") if hasattr(error, "read") else error
            log(f"reloading {model!r} failed: {detail}")
            self.reloads.append(Reload(model, False, started, self.clock()))
            return False
        reload = Reload(model, True, started, self.clock())
        log(f"model {model!r} reloaded in {reload.seconds:.1f} s; its new stub serves requests")
        self.reloads.append(reload)
        return True


def log(message: str) -> None:
    """A launcher message on stderr, beside tritonserver's own log."""
    print(f"[d2_triton.server] {message}", file=sys.stderr, flush=True)
