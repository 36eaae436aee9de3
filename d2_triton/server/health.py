"""What the launcher knows of each pipeline's health: the one source readiness is read from.

Triton 2.51 reports a model READY while its Python-backend stub is dead (it never restarts
one), so its own readiness cannot be trusted.  The reload watchdog
(``d2_triton.server.watchdog``) sees the stubs and writes each watched model's state here;
the front's readiness answers (``d2_triton.server.status``), the gateway's ``/health`` and
``/v1/models``, the page and the launcher's Prometheus metrics all read it back.

A pipeline is ready when each of its models is; it is *reloading* while one of them is being
reloaded after its stub died, and *broken* while one is dead and not (or not yet, or no
longer) being reloaded.  A reload that only loads new versions (Triton serves the previous
one until the new one is ready) leaves its model ready.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from d2_triton.names import PipelineNames


class ModelState(enum.Enum):
    """A watched model's state, from best to worst."""

    READY = "ready"
    RELOADING = "reloading"
    BROKEN = "broken"


# The pipeline takes the worst state of its models.
_RANK = {state: rank for rank, state in enumerate(ModelState)}


@dataclass(frozen=True)
class ModelHealth:
    """One model's state, since when (``time.time()``), and why, in words."""

    state: ModelState
    since: float
    detail: str = ""


@dataclass(frozen=True)
class PipelineHealth:
    """One pipeline's state: its worst model's, with that model's name and why.

    Attributes:
        name: the pipeline's name.
        state: ready, reloading or broken.
        model: the model that makes it not ready (None when ready).
        detail: why, in words ("" when ready).
        since: when it entered this state (``time.time()``).
        last_ready: when it was last fully ready (now, while it is).
    """

    name: str
    state: ModelState
    model: str | None
    detail: str
    since: float
    last_ready: float

    @property
    def ready(self) -> bool:
        """Whether every model of the pipeline can answer."""
        return self.state is ModelState.READY

    def to_json(self) -> dict:
        """As the status endpoint and the gateway carry it."""
        return {
            "name": self.name,
            "state": self.state.value,
            "model": self.model,
            "detail": self.detail,
            "since": round(self.since, 3),
            "last_ready": round(self.last_ready, 3),
        }


class HealthBoard:
    """Each watched model's state and each pipeline's, derived; safe across threads.

    Args:
        pipelines: the pipelines served (their preprocess, detector and postprocess are
            watched; an ensemble has no process of its own).
        clock: wall time (``time.time``), for "since when".
        log: where a pipeline's change of state is told, one line each.
    """

    def __init__(
        self,
        pipelines: list[PipelineNames],
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] | None = None,
    ):
        self.clock = clock
        self.log = log or (lambda message: None)
        self._lock = threading.Lock()
        now = clock()
        self._pipeline_of = {
            model: pipeline.name
            for pipeline in pipelines
            for model in (pipeline.preprocess, pipeline.detector, pipeline.postprocess)
        }
        self._ensembles = {pipeline.ensemble: pipeline.name for pipeline in pipelines}
        self._models = {model: ModelHealth(ModelState.READY, now) for model in self._pipeline_of}
        self._pipelines = {p.name: self._derive(p.name, now, now, None) for p in pipelines}

    @property
    def ensembles(self) -> list[str]:
        """Each pipeline's ensemble, the model clients call."""
        return list(self._ensembles)

    @property
    def models(self) -> list[str]:
        """The watched models (each pipeline's preprocess, detector and postprocess)."""
        return list(self._models)

    def set(self, model: str, state: ModelState, detail: str = "") -> None:
        """Record ``model``'s state (unchanged state and detail: nothing happens)."""
        with self._lock:
            before = self._models[model]
            if before.state is state and before.detail == detail:
                return
            now = self.clock()
            since = before.since if before.state is state else now
            self._models[model] = ModelHealth(state, since, detail)
            name = self._pipeline_of[model]
            old = self._pipelines[name]
            new = self._derive(name, now, now if old.ready else old.last_ready, old)
            self._pipelines[name] = new
        if new.state is not old.state:
            self._tell(old, new)

    def model(self, model: str) -> ModelHealth:
        """A watched model's state."""
        with self._lock:
            return self._models[model]

    def pipelines(self) -> list[PipelineHealth]:
        """Every pipeline's state, by name; ``last_ready`` is now for a ready one."""
        now = self.clock()
        with self._lock:
            found = list(self._pipelines.values())
        return [
            PipelineHealth(p.name, p.state, p.model, p.detail, p.since, now) if p.ready else p
            for p in sorted(found, key=lambda p: p.name)
        ]

    def not_ready(self) -> list[PipelineHealth]:
        """The pipelines that cannot answer now."""
        return [pipeline for pipeline in self.pipelines() if not pipeline.ready]

    def model_ready(self, model: str) -> PipelineHealth | None:
        """What keeps ``model`` from being ready (None: nothing this board knows of).

        A watched model that is not ready, or an ensemble whose pipeline is not.
        """
        with self._lock:
            if model in self._ensembles:
                pipeline = self._pipelines[self._ensembles[model]]
                return None if pipeline.ready else pipeline
            health = self._models.get(model)
            if health is None or health.state is ModelState.READY:
                return None
            name = self._pipeline_of[model]
            return PipelineHealth(
                name,
                health.state,
                model,
                health.detail,
                health.since,
                self._pipelines[name].last_ready,
            )

    def _derive(
        self, name: str, now: float, last_ready: float, old: PipelineHealth | None
    ) -> PipelineHealth:
        """The pipeline ``name``'s state from its models' (caller holds the lock)."""
        members = [
            (model, self._models[model]) for model, p in self._pipeline_of.items() if p == name
        ]
        model, worst = max(members, key=lambda item: _RANK[item[1].state])
        if worst.state is ModelState.READY:
            since = old.since if old is not None and old.ready else now
            return PipelineHealth(name, ModelState.READY, None, "", since, now)
        since = old.since if old is not None and old.state is worst.state else now
        return PipelineHealth(name, worst.state, model, worst.detail, since, last_ready)

    def _tell(self, old: PipelineHealth, new: PipelineHealth) -> None:
        if new.ready:
            away = new.since - old.last_ready
            self.log(f"pipeline {new.name!r}: {old.state.value} -> ready ({away:.1f} s not ready)")
        else:
            self.log(
                f"pipeline {new.name!r}: {old.state.value} -> {new.state.value} "
                f"(model {new.model!r}: {new.detail})"
            )


class HealthCollector(Collector):
    """The launcher's own metrics, read from the board and the watchdog at each scrape.

    Args:
        board: the pipelines' states.
        watchdog: what the reload watchdog has done (``reloads``, ``tick_errors``,
            ``seconds_since_tick()``); None when it is off.
    """

    def __init__(self, board: HealthBoard, watchdog=None):
        self.board = board
        self.watchdog = watchdog

    def collect(self) -> Iterator:
        """The metric families (Prometheus' collector protocol)."""
        ready = GaugeMetricFamily(
            "d2t_pipeline_ready",
            "1 while every model of the pipeline can answer",
            labels=["pipeline"],
        )
        away = GaugeMetricFamily(
            "d2t_pipeline_seconds_since_ready",
            "Seconds since the pipeline was last fully ready (0 while it is)",
            labels=["pipeline"],
        )
        for pipeline in self.board.pipelines():
            ready.add_metric([pipeline.name], 1.0 if pipeline.ready else 0.0)
            away.add_metric(
                [pipeline.name],
                0.0 if pipeline.ready else max(0.0, self.board.clock() - pipeline.last_ready),
            )
        yield ready
        yield away
        if self.watchdog is not None:
            yield from self._watchdog_families()

    def _watchdog_families(self) -> Iterator:
        reloads = CounterMetricFamily(
            "d2t_model_reloads",
            "Reloads by the watchdog, by model, reason (died, versions) and outcome",
            labels=["model", "reason", "outcome"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for reload in list(self.watchdog.reloads):
            key = (reload.model, reload.reason, "succeeded" if reload.succeeded else "failed")
            counts[key] = counts.get(key, 0) + 1
        for key, count in sorted(counts.items()):
            reloads.add_metric(list(key), count)
        yield reloads
        yield CounterMetricFamily(
            "d2t_watchdog_tick_errors",
            "Watchdog looks that raised (logged with the traceback)",
            value=self.watchdog.tick_errors,
        )
        yield GaugeMetricFamily(
            "d2t_watchdog_seconds_since_tick",
            "Seconds since the watchdog last looked",
            value=self.watchdog.seconds_since_tick(),
        )
