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

import argparse
import logging
import sys
from pathlib import Path

from d2_triton.names import DEFAULT_PIPELINE, pipeline_name
from export_tools.api import export
from export_tools.detectron2_setup.shims import shims_in_use
from export_tools.errors import ExportError
from export_tools.repository.writer import read_export_info
from export_tools.settings import DEVICES, CocoDataset, ExportSettings

LOGGER = logging.getLogger("export_tools.export")


def parse_args(argv: list[str] | None = None) -> ExportSettings:
    """The command line as export settings."""
    parser = argparse.ArgumentParser(
        prog="python -m export_tools.export",
        description="Export a Detectron2 model to a Triton model repository (ensemble of "
        "preprocess -> TorchScript detector -> postprocess).",
    )
    parser.add_argument(
        "--config",
        required=True,
        help="model-zoo config name (e.g. COCO-InstanceSegmentation/"
        "mask_rcnn_R_50_FPN_3x.yaml) or a path to a Detectron2 yaml config",
    )
    parser.add_argument(
        "--weights",
        default="zoo",
        help="'zoo' (the config's model-zoo checkpoint), a URL, a local "
        ".pkl/.pth file, or 'random' (fixed-seed init, for tests only)",
    )
    parser.add_argument(
        "--fallback-random",
        action="store_true",
        help="if the weights cannot be loaded (e.g. no network), export a "
        "fixed-seed random init instead of failing, with a loud warning",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --weights random")
    parser.add_argument(
        "--repository",
        type=Path,
        default=Path("models"),
        help="Triton model repository to write (default: models/)",
    )
    parser.add_argument(
        "--name",
        type=pipeline_name,
        default=DEFAULT_PIPELINE,
        help="the pipeline's name: its models become NAME_preprocess, NAME_detector, "
        "NAME_postprocess and NAME_ensemble beside the repository's other pipelines "
        f"(default {DEFAULT_PIPELINE!r}: the plain names preprocess, ..., ensemble)",
    )
    parser.add_argument(
        "--score-thresh-test",
        type=float,
        default=None,
        help="override the model's internal test score threshold "
        "(MODEL.ROI_HEADS / RETINANET .SCORE_THRESH_TEST)",
    )
    parser.add_argument(
        "--default-score-threshold",
        type=float,
        default=0.0,
        help="postprocess' threshold when a request sets none (default 0: "
        "return what the model returns, as DefaultPredictor does)",
    )
    parser.add_argument(
        "--label-map",
        type=Path,
        default=None,
        help="JSON label map to ship instead of the dataset metadata's names",
    )
    parser.add_argument(
        "--coco-dataset",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-format dataset first (register_coco_instances); the class names "
        "come from the config's DATASETS.TEST, so name your test set here",
    )
    parser.add_argument(
        "--sample-image",
        type=Path,
        default=None,
        help="image to trace with (default: a synthetic 480x640 image)",
    )
    parser.add_argument(
        "--exact",
        action="store_true",
        help="one traced TorchScript model, bit-identical to Detectron2 (default: stages, "
        "the static parts run by OpenVINO at float32, within float rounding and faster; "
        "see README)",
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="instance kind of the detector in the generated config",
    )
    parser.add_argument("--detector-instances", type=int, default=1)
    parser.add_argument(
        "--detector-threads",
        type=int,
        default=0,
        help="threads per detector instance (0: the cores the server may use at load, "
        "shared out among the instances)",
    )
    parser.add_argument("--preprocess-instances", type=int, default=1)
    parser.add_argument("--postprocess-instances", type=int, default=1)
    parser.add_argument("--max-image-bytes", type=int, default=ExportSettings.max_image_bytes)
    parser.add_argument("--max-image-pixels", type=int, default=ExportSettings.max_image_pixels)
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="extra Detectron2 config options, KEY VALUE pairs, after '--'",
    )
    args = parser.parse_args(argv)
    options = args.opts[1:] if args.opts and args.opts[0] == "--" else args.opts
    return ExportSettings(
        config=args.config,
        weights=args.weights,
        repository=args.repository,
        name=args.name,
        fallback_random=args.fallback_random,
        seed=args.seed,
        score_thresh_test=args.score_thresh_test,
        default_score_threshold=args.default_score_threshold,
        label_map=args.label_map,
        sample_image=args.sample_image,
        exact=args.exact,
        device=args.device,
        detector_instances=args.detector_instances,
        detector_threads=args.detector_threads,
        preprocess_instances=args.preprocess_instances,
        postprocess_instances=args.postprocess_instances,
        max_image_bytes=args.max_image_bytes,
        max_image_pixels=args.max_image_pixels,
        options=tuple(options),
        datasets=tuple(
            CocoDataset(name, Path(json_file), Path(root))
            for name, json_file, root in args.coco_dataset
        ),
    )


def main(argv: list[str] | None = None) -> int:
    """Export as the command line says; an ExportError ends it with its message."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = parse_args(argv)
    try:
        result = export(settings)
    except ExportError as error:
        print(f"export failed: {error}", file=sys.stderr)
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
