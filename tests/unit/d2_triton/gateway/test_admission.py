"""Admission: at most the limit in flight per pipeline, the rest refused at once with 503."""

from __future__ import annotations

import asyncio

import pytest

from d2_triton.gateway.admission import Admission
from d2_triton.gateway.errors import GatewayError


def test_requests_over_the_limit_are_refused_at_once_and_places_come_back():
    async def scenario() -> list[str]:
        admission = Admission()
        release = asyncio.Event()
        outcomes: list[str] = []

        async def request(pipeline: str) -> None:
            try:
                async with admission.admit(pipeline, limit=2):
                    outcomes.append(f"{pipeline} admitted")
                    await release.wait()
            except GatewayError as error:
                assert error.status == 503 and error.headers == {"Retry-After": "2"}
                assert "2 requests in flight" in error.detail
                outcomes.append(f"{pipeline} refused")

        tasks = [asyncio.create_task(request(p)) for p in ("a", "a", "a", "b")]
        await asyncio.sleep(0.01)
        refused_while_full = outcomes.count("a refused")
        release.set()
        await asyncio.gather(*tasks)
        assert admission.in_flight == {"a": 0, "b": 0}  # every place was given back
        async with admission.admit("a", limit=1):  # and can be taken again
            pass
        return [*outcomes, f"refused while full: {refused_while_full}"]

    outcomes = asyncio.run(scenario())
    assert outcomes.count("a admitted") == 2 and outcomes.count("b admitted") == 1
    assert "refused while full: 1" in outcomes


def test_a_failed_request_gives_its_place_back():
    async def scenario() -> Admission:
        admission = Admission()
        with pytest.raises(RuntimeError):
            async with admission.admit("a", limit=1):
                raise RuntimeError("triton failed")
        return admission

    assert asyncio.run(scenario()).in_flight["a"] == 0
