"""The parity figures the tests measured, and a test export's rule (d2_triton.parity.detections)."""

from __future__ import annotations

from d2_triton.parity.detections import Cut, ParityFigures, rule_for

# Figures the parity tests measured, by "architecture (mode)"; conftest prints them at the
# end of the run and keeps them as JSON.
MEASURED: dict[str, ParityFigures] = {}


def parity_rule(repository, pipeline=None) -> Cut | None:
    """The rule a pipeline (default: the default one) of ``repository`` is held to."""
    from export_tools.repository.writer import read_export_info

    return rule_for(read_export_info(repository, pipeline))


def detections_per_image(options: list[str] | tuple[str, ...]) -> int:
    """TEST.DETECTIONS_PER_IMAGE among Detectron2 options (KEY VALUE ...), else its default."""
    settings = dict(zip(options[::2], options[1::2], strict=True))
    return int(settings.get("TEST.DETECTIONS_PER_IMAGE", Cut.max_detections))
