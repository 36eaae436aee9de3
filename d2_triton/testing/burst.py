"""Bursts: many requests sent at once, each answer's status, time and ``Retry-After``.

The overload test and benchmark send them through the front and the gateway; the detector's
executions (Triton's statistics) show how much work was done for whom.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from d2_triton import names

# An answer later than this is no answer (status 0): a hang, not a slow detector.
SEND_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Answer:
    """One request of a burst: its status (0: no answer), seconds, and Retry-After."""

    status: int
    seconds: float
    retry_after: str | None = None


def binary_infer_request(image: bytes) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a KServe v2 request for the ensemble, the image a binary tensor."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": names.IMAGE_BYTES,
                    "shape": [len(image)],
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": len(image)},
                }
            ],
            "outputs": [{"name": names.BOXES, "parameters": {"binary_data": False}}],
        }
    ).encode()
    return header + image, {"Inference-Header-Content-Length": str(len(header))}


@dataclass(frozen=True)
class Request:
    """A POST a burst sends: where, its body and its headers."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def send_all(request: Request, count: int) -> list[Answer]:
    """``request`` sent ``count`` times at once, each from a thread of its own.

    Every thread opens its connection first; then all send together (a barrier), so the
    burst reaches the server within milliseconds whatever the machine's speed.  Sent thread
    by thread as each started, a burst of 100 took longer on a slow machine than the first
    admitted request did, and places that request freed were taken again: the burst then
    measured the machine's speed, not the front's admission.  An answer's seconds run from
    that common start.
    """
    parts = urllib.parse.urlsplit(request.url)
    path = f"{parts.path}?{parts.query}" if parts.query else parts.path
    together = threading.Barrier(count)

    def one(_: int) -> Answer:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=SEND_TIMEOUT_S)
        try:
            connection.connect()
            together.wait(timeout=SEND_TIMEOUT_S)
            started = time.monotonic()
            try:
                connection.request("POST", path, request.body, request.headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                return Answer(0, time.monotonic() - started)
            seconds = time.monotonic() - started
            return Answer(response.status, seconds, response.getheader("Retry-After"))
        except (OSError, threading.BrokenBarrierError):
            together.abort()  # the others stop waiting: a burst that never was
            return Answer(0, 0.0)
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def statuses(answers: list[Answer]) -> Counter:
    """How many answers had each status."""
    return Counter(answer.status for answer in answers)


def settled_executions(
    read: Callable[[], int], quiet_s: float = 6.0, limit_s: float = 600.0
) -> int:
    """``read()`` once it has not changed for ``quiet_s`` (work queued before has run)."""
    deadline = time.monotonic() + limit_s
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(1.0)
        current = read()
        if current != value:
            value, since = current, time.monotonic()
    return value
