"""The gateway counts, times and logs every request (the real ones: tests/integration)."""

from __future__ import annotations

import json
import logging

from fastapi.testclient import TestClient

from d2_triton.gateway.app import create_app
from d2_triton.gateway.logs import ACCESS_LOGGER, JsonFormatter
from d2_triton.gateway.settings import GatewaySettings
from helpers.metrics import metric_samples


def test_requests_are_counted_by_route_status_and_refused_key(caplog):
    settings = GatewaySettings(mode="debug", triton_port=1, api_key="secret")
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    with TestClient(create_app(settings)) as gateway:
        assert gateway.post("/v1/detect", content=b"x").status_code == 401
        answer = gateway.post("/v1/detect", content=b"x", headers={"X-API-Key": "secret"})
        assert answer.status_code == 502  # no Triton on port 1
        assert answer.headers["Server-Timing"].startswith("total;dur=")
        assert gateway.get("/no/such/path").status_code == 404
        found = metric_samples(gateway.get("/metrics").text)
    count = "d2t_gateway_requests_total"
    detect = (("endpoint", "/v1/detect"), ("pipeline", ""))
    assert found[(count, *detect, ("status", "401"))] == 1
    assert found[(count, *detect, ("status", "502"))] == 1
    assert found[(count, ("endpoint", "other"), ("pipeline", ""), ("status", "404"))] == 1
    assert found[("d2t_gateway_unauthorized_total",)] == 1
    failures = ("d2t_gateway_triton_failures_total", ("kind", "error"), ("pipeline", ""))
    assert found[failures] == 1
    assert found[("d2t_gateway_request_seconds_count", ("endpoint", "/v1/detect"))] == 2
    lines = [record for record in caplog.records if record.name == ACCESS_LOGGER]
    assert [(r.fields["path"], r.fields["status"]) for r in lines][:3] == [
        ("/v1/detect", 401),
        ("/v1/detect", 502),
        ("/no/such/path", 404),
    ]
    assert "POST /v1/detect - 502" in lines[1].getMessage()


def test_json_log_lines_carry_the_request_fields():
    record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 1, "GET / 200", (), None)
    record.fields = {"method": "GET", "status": 200, "total_ms": 1.5, "triton_ms": None}
    document = json.loads(JsonFormatter().format(record))
    assert document["message"] == "GET / 200" and document["level"] == "info"
    assert (document["status"], document["total_ms"], document["triton_ms"]) == (200, 1.5, None)
