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


def reference_answers(url: str, cases: list[Case]) -> dict[str, DetectionResult]:
    """The answer to each good case, asked alone."""
    with DetectionClient(url) as client:
        return {case.name: client.detect(case.payload) for case in cases if not case.expected_error}


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
) -> LoadReport:
    """``clients`` threads, each with its own connection, sending random cases.

    A client stops when it has sent ``requests_per_client``, when ``until(report)`` holds (the
    work a caller needs is done, however long it took), or at the ``deadline``
    (``time.monotonic()``), whichever comes first.  With ``until``, make the deadline a
    generous limit that only a stuck server reaches, and check ``until`` again afterwards.
    A reference may be a tuple of acceptable answers (two model versions, say); a good
    request's ``Request.answer`` says which one it got.
    """
    if requests_per_client is None and deadline is None:
        raise InvalidArgumentError("bound the load by requests_per_client or deadline")
    report = LoadReport()
    lock = threading.Lock()

    def finished() -> bool:
        with lock:
            return until(report)

    def record(
        case: Case,
        outcome: str,
        started: float,
        failure: str | None = None,
        answer: int | None = None,
    ) -> None:
        ended = time.monotonic()
        with lock:
            report.requests += 1
            report.outcomes[(case.name, outcome)] += 1
            report.latencies_ms.append(1000 * (ended - started))
            report.timeline.append(Request(started, ended, outcome, answer))
            setattr(report, outcome, getattr(report, outcome) + 1)
            if failure:
                report.failures.append(f"{case.name}: {failure}")

    def client_loop(index: int) -> None:
        chooser = random.Random(seed * 1000 + index)
        with DetectionClient(url, timeout=timeout) as client:
            sent = 0
            while (
                (requests_per_client is None or sent < requests_per_client)
                and (deadline is None or time.monotonic() < deadline)
                and not (until is not None and finished())
            ):
                case = chooser.choice(cases)
                sent += 1
                started = time.monotonic()
                try:
                    result = client.detect(case.payload)
                except InferenceServerException as error:
                    message = str(error)
                    if (
                        case.expected_error
                        and error.status() == "400"
                        and (case.expected_error in message)
                    ):
                        record(case, "bad_rejected", started)
                    elif case.expected_error:
                        record(case, "bad_unexpected", started, message)
                    else:
                        record(case, "good_failed", started, message)
                    continue
                except Exception as error:  # timeouts, connection errors
                    outcome = "bad_unexpected" if case.expected_error else "good_failed"
                    record(case, outcome, started, repr(error))
                    continue
                if case.expected_error:
                    record(case, "bad_unexpected", started, "accepted a bad input")
                    continue
                expected = references[case.name]
                acceptable = expected if isinstance(expected, tuple) else (expected,)
                matched = [i for i, answer in enumerate(acceptable) if same_answer(result, answer)]
                if matched:  # answers equal under several references say nothing of which
                    record(
                        case, "good_ok", started, answer=matched[0] if len(matched) == 1 else None
                    )
                else:
                    record(case, "wrong_answers", started, "answer differs from its reference")

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return report
