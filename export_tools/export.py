r"""Export a Detectron2 model to a complete Triton model repository: the command line.

    python -m export_tools.export \
        --config COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml \
        --weights zoo --repository models/

A thin layer over the library (``export_tools.api.export``), which writes, under
``--repository``, the four models' configs, the model files, the detector's stage files
(OpenVINO and TorchScript; one TorchScript file with ``--exact``), the label map and
export_info.json (see ``export_tools.repository.writer``).  ``--name NAME`` writes a second pipeline
beside the first (``NAME_preprocess`` ... ``NAME_ensemble``); other pipelines are untouched.
"""

from __future__ import annotations

import logging
import sys

from d2_triton.commands import Parser, command
from export_tools import settings as settings_cli
from export_tools.api import export
from export_tools.detectron2_setup.shims import shims_in_use
from export_tools.errors import ExportError
from export_tools.repository.writer import read_export_info
from export_tools.settings import ExportSettings, one_line

LOGGER = logging.getLogger("export_tools.export")


def parse_args(argv: list[str] | None = None) -> ExportSettings:
    """The command line as export settings (options and their help: ``ExportSettings``)."""
    parser = Parser(
        prog="python -m export_tools.export",
        description="Export a Detectron2 model to a Triton model repository (an ensemble of "
        "preprocess -> detector -> postprocess; the detector staged on OpenVINO, or one "
        "TorchScript file with --exact).",
    )
    settings_cli.add_arguments(parser)
    return settings_cli.from_arguments(parser.parse_args(argv))


@command("python -m export_tools.export")
def main(argv: list[str] | None = None) -> int:
    """Export as the command line says; an ExportError ends it with its message."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = parse_args(argv)
    try:
        result = export(settings)
    except ExportError as error:
        print(f"export failed: {one_line(error)}", file=sys.stderr)
        return 1
    for shim in shims_in_use():
        LOGGER.info("detectron2 shim: %s", shim)
    weights = result.weights
    random_init = weights.source == "random"
    source = f"RANDOM weights (seed {settings.seed})" if random_init else weights.location
    info = result.model.info
    print(
        f"exported {info['meta_architecture']} ({settings.config}) with {source}; "
        f"outputs {', '.join(result.model.fields)}; {info['detector_mode']} detector matches "
        f"eager on the sample ({result.sample_detections} detections, {result.at_cut} at the "
        f"score cut) in {result.seconds:.1f}s. Wrote:"
    )
    for path in result.written:
        print(f"  {path}")
    version = read_export_info(settings.repository, settings.pipeline)["version"]
    if version > 1:
        folder = settings.repository / settings.pipeline.detector / str(version)
        print(
            f"version {version} of pipeline {settings.name!r}: a running d2_triton.server loads "
            f"it within seconds (Triton serves the latest version); to roll back, move "
            f"{folder} out of the repository."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
