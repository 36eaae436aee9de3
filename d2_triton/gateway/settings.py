"""The gateway's settings, all from environment variables.

12-factor, as docker-compose sets them.  Invalid values fail at start-up with a message
naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from d2_triton import names
from d2_triton.client import PROTOCOLS
from d2_triton.errors import D2TritonError
from d2_triton.model_config import DecodeLimits

MODES = ("debug", "develop", "production")
LOG_LEVELS = {"debug": "debug", "develop": "info", "production": "warning"}
LOG_FORMATS = ("text", "json")
SWITCHES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


class SettingsError(D2TritonError, ValueError):
    """An invalid gateway setting; the message names the environment variable."""


@dataclass(frozen=True)
class GatewaySettings:
    """Where the gateway listens, where Triton is, and the limits (see the module docstring)."""

    host: str = "0.0.0.0"
    port: int = names.GATEWAY_PORT
    mode: str = "production"
    triton_host: str = "localhost"
    triton_port: int = names.DEFAULT_PORTS["http"]
    # The pipeline a request without ``?model=`` goes to (``export --name``).
    default_model: str = names.DEFAULT_PIPELINE
    triton_protocol: str = "http"
    triton_timeout_s: float = 60.0
    triton_connections: int = 64
    label_mapping_file: Path | None = None
    max_upload_bytes: int = DecodeLimits().max_bytes
    # When set, every endpoint but /health wants it in the X-API-Key header.
    api_key: str | None = field(default=None, repr=False)
    # Detections in flight per pipeline (None: names.ADMITTED_PER_INSTANCE per detector
    # instance); the rest are answered 503 at once.
    max_in_flight: int | None = None
    # The model server's admin key (its restricted statistics API lists the pipelines): the
    # key itself, or a file the launcher writes it to (read at each use: it may change at
    # each start of the model server).
    triton_admin_key: str | None = field(default=None, repr=False)
    triton_admin_key_file: Path | None = None
    # The page at / (None: on outside production mode; UI=1 turns it on in production).
    ui: bool | None = None
    # The per-request log line: plain text, or one JSON object per line (LOG_FORMAT=json).
    log_format: str = "text"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingsError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(
                f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}"
            )
        if self.triton_protocol not in PROTOCOLS:
            raise SettingsError(
                f"TRITON_PROTOCOL must be one of {', '.join(PROTOCOLS)}, got "
                f"{self.triton_protocol!r}"
            )
        if self.label_mapping_file is not None and not self.label_mapping_file.is_file():
            raise SettingsError(f"LABEL_MAPPING_FILE {self.label_mapping_file} does not exist")
        try:
            names.PipelineNames(self.default_model)
        except ValueError as error:
            raise SettingsError(f"DEFAULT_MODEL: {error}") from None
        if self.api_key is not None and not self.api_key.strip():
            raise SettingsError("API_KEY is blank: unset it to run without one")
        for name in ("port", "triton_port", "triton_connections", "max_upload_bytes"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name.upper()} must be positive")
        if self.max_in_flight is not None and self.max_in_flight <= 0:
            raise SettingsError("MAX_IN_FLIGHT must be positive")

    def admin_key(self) -> str | None:
        """The model server's admin key: TRITON_ADMIN_KEY, else TRITON_ADMIN_KEY_FILE's text."""
        if self.triton_admin_key or self.triton_admin_key_file is None:
            return self.triton_admin_key
        try:
            return self.triton_admin_key_file.read_text().strip() or None
        except OSError:  # the model server has not written it yet
            return None

    @property
    def triton_url(self) -> str:
        """host:port of Triton."""
        return f"{self.triton_host}:{self.triton_port}"

    @property
    def log_level(self) -> str:
        """Uvicorn's log level for the mode."""
        return LOG_LEVELS[self.mode]

    @property
    def docs_enabled(self) -> bool:
        """Swagger UI and ReDoc are for debugging and development; /openapi.json stays."""
        return self.mode != "production"

    @property
    def ui_enabled(self) -> bool:
        """The page at ``/``: UI when set, else on outside production mode (as the docs)."""
        return self.docs_enabled if self.ui is None else self.ui

    @property
    def reload(self) -> bool:
        """Whether uvicorn reloads on code changes (develop mode)."""
        return self.mode == "develop"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        """Settings from environment variables (``environ``, default ``os.environ``)."""
        env = os.environ if environ is None else environ
        protocol = protocol_from(env)
        label_file = env.get("LABEL_MAPPING_FILE", "").strip()
        key_file = env.get("TRITON_ADMIN_KEY_FILE", "").strip()
        max_in_flight = env.get("MAX_IN_FLIGHT", "").strip()
        # An unknown protocol is refused below, naming the variable.
        default_port = names.DEFAULT_PORTS.get(protocol, names.DEFAULT_PORTS["http"])
        return cls(
            host=env.get("HOST", cls.host),
            port=number(env, "PORT", int, cls.port),
            mode=(env.get("mode") or env.get("MODE") or cls.mode).strip().lower(),
            triton_host=env.get("TRITON_HOST", cls.triton_host),
            triton_port=number(env, "TRITON_PORT", int, default_port),
            default_model=env.get("DEFAULT_MODEL", cls.default_model).strip(),
            triton_protocol=protocol,
            triton_timeout_s=number(env, "TRITON_TIMEOUT_S", float, cls.triton_timeout_s),
            triton_connections=number(env, "TRITON_CONNECTIONS", int, cls.triton_connections),
            label_mapping_file=Path(label_file) if label_file else None,
            max_upload_bytes=number(env, "MAX_UPLOAD_BYTES", int, cls.max_upload_bytes),
            api_key=env.get("API_KEY") or None,
            max_in_flight=number(env, "MAX_IN_FLIGHT", int, None) if max_in_flight else None,
            triton_admin_key=env.get("TRITON_ADMIN_KEY") or None,
            triton_admin_key_file=Path(key_file) if key_file else None,
            ui=switch(env, "UI"),
            log_format=env.get("LOG_FORMAT", cls.log_format).strip().lower(),
        )


# The variables naming Triton's protocol: this project's, and the seed's name for it.
PROTOCOL_VARIABLES = ("TRITON_PROTOCOL", "TRITON_MODEL_PROTOCOL")


def protocol_from(env: Mapping[str, str]) -> str:
    """``TRITON_PROTOCOL`` or ``TRITON_MODEL_PROTOCOL`` (http when neither is set).

    Both set to different protocols is a SettingsError: which one was meant cannot be known.
    """
    given = {
        variable: env[variable].strip().lower()
        for variable in PROTOCOL_VARIABLES
        if env.get(variable, "").strip()
    }
    if len(set(given.values())) > 1:
        both = " and ".join(f"{name}={value}" for name, value in given.items())
        raise SettingsError(f"{both} disagree: set one of them")
    return next(iter(given.values()), "http")


def number(env: Mapping[str, str], variable: str, kind: type, default):
    """``variable`` read as ``kind`` (int or float), else ``default``; SettingsError names it."""
    text = env.get(variable)
    if text is None or not text.strip():
        return default
    try:
        return kind(text)
    except ValueError:
        raise SettingsError(f"{variable} must be a number, got {text!r}") from None


def switch(env: Mapping[str, str], variable: str) -> bool | None:
    """``variable`` as on (1/true/yes) or off (0/false/no), None when unset; else SettingsError."""
    text = env.get(variable, "").strip().lower()
    if not text:
        return None
    if text not in SWITCHES:
        raise SettingsError(f"{variable} must be 1 or 0, got {text!r}")
    return SWITCHES[text]
