"""How the watchdog loads a model again: in place, through Triton's restricted gRPC API.

``ModelReloader`` reloads one model without unloading it; ``version_folders`` lists the
version folders Triton would load, so the watchdog notices an export's new version (or an
operator's rollback) on disk; a :class:`Reload` records one reload and its :class:`Reason`,
and a :class:`WatchedModel` what the watchdog knows of one model between its looks.
"""

from __future__ import annotations

import enum
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from d2_triton.errors import UpstreamError
from d2_triton.names import ADMIN_GRPC_METADATA, model_version

# Config parameter whose new value makes Triton load an otherwise unchanged config again.
RELOAD_GENERATION_PARAMETER = "d2t_reload_generation"


class Reason(enum.Enum):
    """Why a model is reloaded."""

    DIED = "died"  # it has fewer live stubs than when healthy: it can only fail until reloaded
    VERSIONS = "versions"  # its version folders changed: Triton should serve the latest


@dataclass(frozen=True)
class Reload:
    """One reload by the watchdog; times are the watchdog's clock (``time.monotonic()``)."""

    model: str
    succeeded: bool
    started_at: float
    finished_at: float
    reason: str = Reason.DIED.value
    error: str = ""

    @property
    def seconds(self) -> float:
        """How long the reload took."""
        return self.finished_at - self.started_at


@dataclass
class WatchedModel:
    """The watchdog's bookkeeping of one model (touched by its looking thread only)."""

    expected: int = 1  # live stubs when healthy: the count at first sight, at least one
    pids: frozenset[int] = frozenset()  # the live stubs at the last look, for the log
    replaced: frozenset[int] = frozenset()  # a death's survivors, which its reload replaces
    retire_at: float | None = None  # when they are ended (their reload succeeded)
    failures: int = 0  # failed reloads in a row
    due: float | None = None  # a reload is wanted from then on
    reason: Reason | None = None
    running: bool = False
    disk_moved: bool = False  # its version folders changed while its reload ran
    outcome: Reload | None = None  # a finished reload, set by its thread, taken by a look


class ModelReloader:
    """Loads a model again, in place, through Triton's restricted model-repository API.

    Triton skips a load whose config is unchanged, so the served config goes back with one
    more parameter, ``d2t_reload_generation``; the model stays loaded meanwhile, so the
    ensemble never disappears (an unload would make it answer 404 to every request, bad
    ones included, until the load is done).

    The load is asked over gRPC.  Triton 2.51's HTTP server runs a load on the worker thread
    of the connection that asked, for as long as the load takes, and every other connection
    served by that thread waits: the front's pooled connections to Triton, so requests and
    probes through the front stalled for the whole reload (6.8 s of a 6.9 s detector
    reload, measured).  Its gRPC server runs repository calls apart from inference.
    """

    def __init__(self, grpc_url: str, admin_key: str, load_timeout: float = 600.0):
        self.grpc_url = grpc_url
        self.admin_key = admin_key
        self.load_timeout = load_timeout
        self._generation = 0
        self._lock = threading.Lock()  # reloads of several models may run at once

    def __call__(self, model: str) -> None:
        """Reload ``model``; UpstreamError when Triton refuses or cannot be reached."""
        with self._lock:
            self._generation += 1
            generation = self._generation
        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            config = client.get_model_config(model, as_json=True, client_timeout=30)["config"]
            parameters = config.setdefault("parameters", {})
            parameters[RELOAD_GENERATION_PARAMETER] = {"string_value": str(generation)}
            client.load_model(
                model,
                config=json.dumps(config),
                headers={ADMIN_GRPC_METADATA: self.admin_key},
                client_timeout=self.load_timeout,
            )
        except InferenceServerException as error:
            raise UpstreamError(f"Triton did not load {model}: {error.message()}") from None
        finally:
            client.close()


def version_folders(repository: Path) -> dict[str, frozenset[str]]:
    """Model name -> the version folders Triton would load (``schema.model_version``).

    A folder that disappears while it is read (an operator rolling back) is left out: the
    next look sees the repository as it is then.
    """
    found = {}
    for model in repository.iterdir():
        try:
            if (model / "config.pbtxt").is_file():
                found[model.name] = frozenset(
                    version.name
                    for version in model.iterdir()
                    if version.is_dir() and model_version(version.name) is not None
                )
        except FileNotFoundError:
            continue
    return found
