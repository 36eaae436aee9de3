"""The optional API key (``API_KEY``): every endpoint but ``/health`` asks for it when set."""

from __future__ import annotations

import hmac

from fastapi import Security
from fastapi.security import APIKeyHeader

from d2_triton.gateway.errors import GatewayError
from d2_triton.gateway.interface import API_KEY_HEADER

API_KEY_SCHEME = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="the gateway's API key (API_KEY)"
)


def api_key_checker(expected: str):
    """A dependency refusing requests without the API key (401); compared in constant time."""

    async def check(key: str | None = Security(API_KEY_SCHEME)) -> None:
        if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
            raise GatewayError(
                401,
                f"missing or wrong API key (header {API_KEY_HEADER})",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )

    return check
