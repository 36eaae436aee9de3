"""The optional API key: every endpoint but /health wants it; OpenAPI documents it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from d2_triton.gateway.app import create_app
from d2_triton.gateway.interface import API_KEY_HEADER
from d2_triton.gateway.settings import GatewaySettings, SettingsError
from d2_triton.testing.ports import free_ports

KEY = "correct-horse-battery-staple"


def client_for(api_key: str | None) -> TestClient:
    """The app in front of a Triton that is not there (auth is decided before any call)."""
    settings = GatewaySettings(
        triton_host="127.0.0.1", triton_port=free_ports(1)[0], api_key=api_key
    )
    return TestClient(create_app(settings))


@pytest.mark.parametrize("headers", [{}, {API_KEY_HEADER: "wrong"}, {API_KEY_HEADER: ""}])
def test_requests_without_the_key_get_a_401(headers):
    with client_for(KEY) as client:
        for method, path in (
            ("get", "/v1/models"),
            ("post", "/v1/detect"),
            ("post", "/v1/detect/render"),
        ):
            response = client.request(method, path, content=b"\xff\xd8\xff", headers=headers)
            assert response.status_code == 401, (path, response.text)
            assert API_KEY_HEADER in response.json()["detail"]
            assert response.headers["www-authenticate"] == API_KEY_HEADER


def test_the_key_lets_requests_through_and_health_stays_open():
    with client_for(KEY) as client:
        # Past the key check, the missing Triton answers: 502, not 401.
        assert client.get("/v1/models", headers={API_KEY_HEADER: KEY}).status_code == 502
        assert client.get("/health").status_code == 503  # open, and honest about Triton


def test_without_a_key_nothing_asks_for_one():
    with client_for(None) as client:
        assert client.get("/v1/models").status_code == 502
        assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_openapi_documents_the_key_when_it_is_in_force():
    with client_for(KEY) as client:
        spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert [s["name"] for s in schemes.values()] == [API_KEY_HEADER]
    assert "security" in spec["paths"]["/v1/detect"]["post"]
    assert "401" in spec["paths"]["/v1/detect"]["post"]["responses"]
    assert "security" not in spec["paths"]["/health"]["get"]


def test_a_blank_key_is_refused_and_the_key_is_never_printed():
    with pytest.raises(SettingsError, match="API_KEY is blank"):
        GatewaySettings.from_env({"API_KEY": "   "})
    assert KEY not in repr(GatewaySettings.from_env({"API_KEY": KEY}))
