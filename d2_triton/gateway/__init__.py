"""The REST gateway ("client server"): plain HTTP uploads in, detections or pictures out.

    python -m d2_triton.gateway        # settings from the environment, see settings.py

Endpoints: ``POST /v1/detect``, ``POST /v1/detect/render``, ``GET /health``,
``GET /v1/models``; OpenAPI at ``/openapi.json`` (Swagger UI at ``/docs`` outside
production mode).
"""

from d2_triton.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings"]
