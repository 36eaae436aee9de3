"""Concurrent load with a mix of good and bad requests, every answer checked.

Good requests are real photos whose answer was recorded beforehand, one request at a time;
under load each answer must equal its reference exactly (no mix-ups between concurrent
requests, no lost or altered results).  Bad requests must fail with a 400 and a message
naming the problem, within the client timeout.  Loopback only; bounded by a request count
or a deadline.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tritonclient.utils import InferenceServerException

from d2_triton.client import DetectionClient, DetectionResult
from d2_triton.errors import InvalidArgumentError
from d2_triton.names import DEFAULT_PIPELINE


@dataclass(frozen=True)
class Case:
    """One payload of a load run; bad ones carry the text their 400 must contain."""

    name: str
    payload: bytes
    expected_error: str | None = None  # substring of the 400 message for bad inputs


@dataclass(frozen=True)
class Request:
    """One request of a load run: when it was sent and answered (``time.monotonic()``)."""

    started: float
    ended: float
    outcome: str  # a LoadReport counter: good_ok, good_failed, wrong_answers, bad_...
    # good_ok: which of the case's acceptable answers it was (None: one of several equal ones)
    answer: int | None = None


@dataclass
class LoadReport:
    """What a load run saw: counts by outcome, latencies, failures, a timeline."""

    requests: int = 0
    good_ok: int = 0
    good_failed: int = 0
    wrong_answers: int = 0
    bad_rejected: int = 0
    bad_unexpected: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    timeline: list[Request] = field(default_factory=list)  # in the order they ended

    @property
    def clean(self) -> bool:
        """No good request failed, no answer was wrong, every bad one was refused."""
        return not (self.good_failed or self.wrong_answers or self.bad_unexpected)

    def summary(self) -> dict:
        """The counts and latency percentiles, as JSON-ready values."""
        latencies = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "requests": self.requests,
            "good_ok": self.good_ok,
            "good_failed": self.good_failed,
            "wrong_answers": self.wrong_answers,
            "bad_rejected": self.bad_rejected,
            "bad_unexpected": self.bad_unexpected,
            "latency_ms_p50": float(np.percentile(latencies, 50)),
            "latency_ms_p99": float(np.percentile(latencies, 99)),
            "latency_ms_max": float(latencies.max()),
            "first_failures": self.failures[:10],
        }


def same_answer(a: DetectionResult, b: DetectionResult) -> bool:
    """Whether two results are the same, tensor for tensor."""
    return (
        a.image_size == b.image_size
        and np.array_equal(a.boxes, b.boxes)
        and np.array_equal(a.scores, b.scores)
        and np.array_equal(a.classes, b.classes)
        and a.labels == b.labels
        and a.masks_rle == b.masks_rle
    )


def reference_answers(
    url: str, cases: list[Case], model: str = DEFAULT_PIPELINE
) -> dict[str, DetectionResult]:
    """The answer to each good case, asked alone (of pipeline ``model``)."""
    with DetectionClient(url, model=model) as client:
        return {case.name: client.detect(case.payload) for case in cases if not case.expected_error}


@dataclass
class Bounds:
    """When a load run's clients stop (the first that holds); see ``run_load``."""

    requests_per_client: int | None = None
    deadline: float | None = None
    until: Callable[[LoadReport], bool] | None = None


class LoadRun:
    """The shared state of one run: the report, its lock, the cases and their references."""

    def __init__(self, url: str, cases: list[Case], references: dict, bounds: Bounds, model: str):
        self.url, self.cases, self.references, self.bounds = url, cases, references, bounds
        self.model = model
        self.report = LoadReport()
        self.lock = threading.Lock()

    def more(self, sent: int) -> bool:
        """Whether a client that has sent ``sent`` requests sends another."""
        bounds = self.bounds
        if bounds.requests_per_client is not None and sent >= bounds.requests_per_client:
            return False
        if bounds.deadline is not None and time.monotonic() >= bounds.deadline:
            return False
        if bounds.until is not None:
            with self.lock:
                return not bounds.until(self.report)
        return True

    def record(self, case: Case, outcome: str, started: float, failure=None, answer=None):
        """One request's outcome (a ``LoadReport`` counter), latency and failure text."""
        ended = time.monotonic()
        with self.lock:
            report = self.report
            report.requests += 1
            report.outcomes[(case.name, outcome)] += 1
            report.latencies_ms.append(1000 * (ended - started))
            report.timeline.append(Request(started, ended, outcome, answer))
            setattr(report, outcome, getattr(report, outcome) + 1)
            if failure:
                report.failures.append(f"{case.name}: {failure}")

    def send(self, client: DetectionClient, case: Case) -> None:
        """Send ``case`` once and record how it went."""
        started = time.monotonic()
        try:
            result = client.detect(case.payload)
        except InferenceServerException as error:
            refused = bool(case.expected_error) and error.status() == "400"
            refused = refused and case.expected_error in str(error)
            if case.expected_error:
                outcome = "bad_rejected" if refused else "bad_unexpected"
            else:
                outcome = "good_failed"
            self.record(case, outcome, started, None if refused else str(error))
            return
        except Exception as error:  # timeouts, connection errors
            outcome = "bad_unexpected" if case.expected_error else "good_failed"
            self.record(case, outcome, started, repr(error))
            return
        if case.expected_error:
            self.record(case, "bad_unexpected", started, "accepted a bad input")
            return
        expected = self.references[case.name]
        acceptable = expected if isinstance(expected, tuple) else (expected,)
        matched = [i for i, answer in enumerate(acceptable) if same_answer(result, answer)]
        if not matched:
            self.record(case, "wrong_answers", started, "answer differs from its reference")
            return
        # answers equal under several references say nothing of which one it was
        self.record(case, "good_ok", started, answer=matched[0] if len(matched) == 1 else None)

    def client_loop(self, chooser: random.Random, timeout: float) -> None:
        """One client: its own connection, random cases until the bounds say stop."""
        with DetectionClient(self.url, model=self.model, timeout=timeout) as client:
            sent = 0
            while self.more(sent):
                sent += 1
                self.send(client, chooser.choice(self.cases))


def run_load(
    url: str,
    cases: list[Case],
    references: dict[str, DetectionResult | tuple[DetectionResult, ...]],
    clients: int,
    requests_per_client: int | None = None,
    deadline: float | None = None,
    timeout: float = 300.0,
    seed: int = 0,
    until: Callable[[LoadReport], bool] | None = None,
    model: str = DEFAULT_PIPELINE,
) -> LoadReport:
    """``clients`` threads, each with its own connection, sending random cases.

    A client stops when it has sent ``requests_per_client``, when ``until(report)`` holds (the
    work a caller needs is done, however long it took), or at the ``deadline``
    (``time.monotonic()``), whichever comes first.  With ``until``, make the deadline a
    generous limit that only a stuck server reaches, and check ``until`` again afterwards.
    A reference may be a tuple of acceptable answers (two model versions, say); a good
    request's ``Request.answer`` says which one it got.  ``model``: the pipeline asked.
    """
    if requests_per_client is None and deadline is None:
        raise InvalidArgumentError("bound the load by requests_per_client or deadline")
    run = LoadRun(url, cases, references, Bounds(requests_per_client, deadline, until), model)
    threads = [
        threading.Thread(target=run.client_loop, args=(random.Random(seed * 1000 + i), timeout))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return run.report
