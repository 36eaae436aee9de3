"""Run the gateway with uvicorn: ``python -m d2_triton.gateway`` (see settings.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from d2_triton.gateway.logs import logging_config
from d2_triton.gateway.settings import GatewaySettings, SettingsError


def main() -> int:
    """Serve the gateway with uvicorn; returns the exit status."""
    import uvicorn

    try:
        settings = GatewaySettings.from_env()
    except SettingsError as error:
        print(f"d2_triton.gateway: {error}", file=sys.stderr)
        return 2
    print(
        f"d2-triton gateway on {settings.host}:{settings.port} ({settings.mode} mode) -> "
        f"Triton {settings.triton_url} ({settings.triton_protocol}), model "
        f"{settings.default_model!r} unless a request names another",
        flush=True,
    )
    uvicorn.run(
        "d2_triton.gateway.app:create_app",
        factory=True,  # the app reads its settings from the environment, also after a reload
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=logging_config(settings.log_format, settings.log_level),
        access_log=False,  # the gateway writes its own line per request (gateway.logs)
        reload=settings.reload,
        reload_dirs=[str(Path(__file__).resolve().parents[1])] if settings.reload else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
