"""The gateway's log: uvicorn's lines and one line per request, as text or JSON.

``LOG_FORMAT=json`` writes every line, uvicorn's own included, as one JSON object (for log
collectors); the default is plain text.  Uvicorn's access log is off: the gateway's request
line (``d2_triton.gateway.access``) says more (pipeline, Triton's share of the time) and is
written in every mode, production included.
"""

from __future__ import annotations

import json
import logging
from typing import Any

ACCESS_LOGGER = "d2_triton.gateway.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and a record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON (an exception, if any, as its formatted text)."""
        document: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` for uvicorn and the gateway (uvicorn's log_config)."""
    formatter = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "gateway",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": formatter},
        "handlers": {"gateway": handler},
        "loggers": {
            "uvicorn": {"handlers": ["gateway"], "level": level.upper(), "propagate": False},
            "d2_triton": {"handlers": ["gateway"], "level": level.upper(), "propagate": False},
            # The request line is the access log: written whatever the mode's level.
            ACCESS_LOGGER: {"level": "INFO"},
        },
    }


def log_request(fields: dict[str, Any]) -> None:
    """The request's line: method, path, pipeline, status, total and Triton milliseconds."""
    triton = fields.get("triton_ms")
    message = "{method} {path} {pipeline} {status} {total_ms:.1f} ms".format(
        **{**fields, "pipeline": fields.get("pipeline") or "-"}
    )
    if triton is not None:
        message += f" (triton {triton:.1f} ms)"
    logging.getLogger(ACCESS_LOGGER).info(message, extra={"fields": fields})
