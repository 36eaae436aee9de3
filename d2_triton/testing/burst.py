"""Bursts: many requests sent at once, each answer's status, time and ``Retry-After``.

The overload test and benchmark send them through the front and the gateway; the detector's
executions (Triton's statistics) show how much work was done for whom.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import requests

from d2_triton import names


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


def send_all(send: Callable[[], requests.Response], count: int) -> list[Answer]:
    """Call ``send`` ``count`` times at once, each in a thread of its own."""

    def one(_: int) -> Answer:
        started = time.monotonic()
        try:
            response = send()
        except requests.RequestException:
            return Answer(0, time.monotonic() - started)
        return Answer(
            response.status_code, time.monotonic() - started, response.headers.get("Retry-After")
        )

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
