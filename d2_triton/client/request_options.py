"""What a client may ask of the ensemble per request, as Triton request parameters.

The server reads them back in ``d2_triton.serving.options`` (which documents each one); a
client builds them here, from a ``RequestOptions`` or from its field names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from d2_triton.errors import InvalidArgumentError


@dataclass(frozen=True)
class RequestOptions:
    """The per-request options, sent as Triton request parameters (None: the server's default).

    Attributes:
        score_threshold: keep detections with ``score >= score_threshold``.
        max_detections: keep at most this many, highest scores first.
        classes: class ids and/or names to keep, as a comma-separated string or a list.
        mask_format: one of ``d2_triton.names.MASK_FORMATS``.
    """

    score_threshold: float | None = None
    max_detections: int | None = None
    classes: str | Sequence[str | int] | None = None
    mask_format: str | None = None

    def to_parameters(self) -> dict[str, Any]:
        """Triton request parameters for the options that are set."""
        parameters: dict[str, Any] = {}
        if self.score_threshold is not None:
            parameters["score_threshold"] = float(self.score_threshold)
        if self.max_detections is not None:
            parameters["max_detections"] = int(self.max_detections)
        if self.classes is not None:
            classes = self.classes
            if not isinstance(classes, str):
                classes = ",".join(str(item) for item in classes)
            parameters["classes"] = classes
        if self.mask_format is not None:
            parameters["mask_format"] = self.mask_format
        return parameters


def build_request_parameters(
    options: RequestOptions | None = None, **fields: Any
) -> dict[str, Any]:
    """Triton request parameters from ``options``, or from RequestOptions' field names."""
    if options is not None and fields:
        raise InvalidArgumentError("pass RequestOptions or its fields, not both")
    return (options or RequestOptions(**fields)).to_parameters()
