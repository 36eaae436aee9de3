"""Export a Detectron2 model to a complete Triton model repository.

    python -m export_tools.export \\
        --config COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml \\
        --weights zoo --repository models/

writes, under --repository:

    preprocess/config.pbtxt   preprocess/1/model.py       decode + Detectron2 resize
    detector/config.pbtxt     detector/1/model.py         TorchScript run by torch
                              detector/1/model.pt         the traced Detectron2 model
    postprocess/config.pbtxt  postprocess/1/model.py      boxes, masks, label names
                              postprocess/labels.json     class id -> name
    ensemble/config.pbtxt     ensemble/1/                 the three joined: bytes in, detections out
    export_info.json                                      what was exported, from what

The model is traced as Detectron2's ``tools/deploy/export_model.py --export-method tracing``
does (``TracingAdapter`` + ``torch.jit.trace``, R-CNN ``inference(do_postprocess=False)``),
with the image as uint8 CHW, on the CPU, so the file carries no device.  The final
``detector_postprocess`` (rescaling, mask pasting) runs in ``postprocess`` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from d2_triton import schema
from d2_triton.imaging import DecodeLimits, resize_shortest_edge, to_model_layout
from d2_triton.labels import LabelMap
from export_tools import triton_config
from export_tools.detectron2_env import import_detectron2, shims_in_use

LOGGER = logging.getLogger("export_tools.export")
TEMPLATE_REPOSITORY = Path(__file__).resolve().parent.parent / "models"
TORCHSCRIPT_FILE = "model.pt"
LABEL_MAP_FILE = "labels.json"
EXPORT_INFO_FILE = "export_info.json"

# Spread of mask logits of the random model (see build_random_model).
RANDOM_MASK_LOGIT_STD = 4.0

# Instances fields exported, in this order, when the model produces them.
EXPORTED_FIELDS = ("pred_boxes", "scores", "pred_classes", "pred_masks", "pred_keypoints")


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # "checkpoint" or "random"
    location: str | None = None
    seed: int | None = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
        "--sample-image",
        type=Path,
        default=None,
        help="image to trace with (default: a synthetic 480x640 image)",
    )
    parser.add_argument(
        "--freeze",
        action="store_true",
        help="freeze the TorchScript (BatchNorms folded into convolutions): ~1.2x faster on "
        "CPU, but results then differ from Detectron2's by float32 rounding (see README)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="instance kind of the detector in the generated config",
    )
    parser.add_argument("--detector-instances", type=int, default=1)
    parser.add_argument(
        "--detector-threads",
        type=int,
        default=0,
        help="torch intra-op threads per detector instance (0: torch default)",
    )
    parser.add_argument("--preprocess-instances", type=int, default=1)
    parser.add_argument("--postprocess-instances", type=int, default=1)
    parser.add_argument("--max-image-bytes", type=int, default=DecodeLimits.max_bytes)
    parser.add_argument("--max-image-pixels", type=int, default=DecodeLimits.max_pixels)
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="extra Detectron2 config options, KEY VALUE pairs, after '--'",
    )
    args = parser.parse_args(argv)
    if args.opts and args.opts[0] == "--":
        args.opts = args.opts[1:]
    return args


def load_config(config: str, opts: list[str], score_thresh_test: float | None):
    """A frozen Detectron2 CfgNode on the CPU, from a model-zoo name or a yaml file."""
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    cfg = get_cfg()
    config_file = config if Path(config).is_file() else model_zoo.get_config_file(config)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if score_thresh_test is not None:
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_thresh_test
        cfg.MODEL.RETINANET.SCORE_THRESH_TEST = score_thresh_test
    cfg.MODEL.DEVICE = "cpu"  # trace on CPU: the TorchScript file then has no device baked in
    cfg.freeze()
    return cfg


def resolve_weights(weights: str, config: str) -> str | None:
    """'zoo' -> the model-zoo URL of a zoo config; 'random' -> None; else unchanged."""
    if weights == "random":
        return None
    if weights == "zoo":
        from detectron2 import model_zoo

        if Path(config).is_file():
            raise SystemExit("--weights zoo needs a model-zoo config name, not a file path")
        return model_zoo.get_checkpoint_url(config)
    return weights


def build_model(cfg, weights: str | None, seed: int, fallback_random: bool):
    """Build the eval-mode model and load its weights; returns (model, WeightsInfo)."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model as build_detectron2_model

    if weights is None:
        announce_random_weights(seed, reason="--weights random")
        return build_random_model(cfg, seed), WeightsInfo(source="random", seed=seed)
    model = build_detectron2_model(cfg).eval()
    try:
        DetectionCheckpointer(model).load(weights)
    except Exception as error:
        if not fallback_random:
            raise SystemExit(f"could not load weights {weights}: {error}") from error
        announce_random_weights(seed, reason=f"loading {weights} failed: {error}")
        return build_random_model(cfg, seed), WeightsInfo("random", location=weights, seed=seed)
    return model, WeightsInfo(source="checkpoint", location=weights)


def build_random_model(cfg, seed: int):
    """Detectron2's own initialisation under ``seed``, made to behave like a trained model.

    Two adjustments, both measured on a fixed synthetic image, so the result is
    deterministic for a given seed:

    * Frozen BatchNorm statistics are set from the activations each layer sees (what trained
      statistics do).  Detectron2 initialises them to mean 0 / variance 1, i.e. no
      normalisation; through a 50-layer random ResNet activations then reach ~1e9, every
      score saturates at exactly 1.0 and keypoint decoding meets non-finite values.
    * The mask predictor is scaled so mask logits have a standard deviation of
      ``RANDOM_MASK_LOGIT_STD``.  Detectron2 initialises it with std 0.001, which leaves every
      mask probability at 0.5 +- 0.01: each pixel a coin toss at the 0.5 threshold, unlike
      the confident masks of a trained model.
    """
    from detectron2.layers import FrozenBatchNorm2d
    from detectron2.modeling import build_model as build_detectron2_model

    torch.manual_seed(seed)
    model = build_detectron2_model(cfg).eval()
    image = model_input(cfg, synthetic_sample_image())

    def set_statistics(module, inputs):
        activations = inputs[0]
        module.running_mean.copy_(activations.mean(dim=(0, 2, 3)))
        module.running_var.copy_(activations.var(dim=(0, 2, 3)))

    frozen_norms = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    hooks = [module.register_forward_pre_hook(set_statistics) for module in frozen_norms]
    with torch.no_grad():
        model.backbone(model.preprocess_image([{"image": image}]).tensor)
    for hook in hooks:
        hook.remove()

    mask_predictor = getattr(getattr(model, "roi_heads", None), "mask_head", None)
    if mask_predictor is not None:
        mask_predictor = mask_predictor.predictor
        logits = []
        hook = mask_predictor.register_forward_hook(lambda _m, _i, out: logits.append(out))
        with torch.no_grad():
            raw_instances(model, image)
        hook.remove()
        if logits and logits[0].numel() > 1:
            with torch.no_grad():
                mask_predictor.weight.mul_(RANDOM_MASK_LOGIT_STD / logits[0].std())
    return model


def announce_random_weights(seed: int, reason: str) -> None:
    banner = "!" * 78
    LOGGER.warning(
        "\n%s\n!! EXPORTING RANDOMLY INITIALISED WEIGHTS (seed %d): %s\n"
        "!! Detections from this model are meaningless; use it for tests only.\n%s",
        banner,
        seed,
        reason,
        banner,
    )


def synthetic_sample_image(height: int = 480, width: int = 640) -> np.ndarray:
    """A deterministic BGR test card; tracing records ops, so its content barely matters."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([cols * 255 // width, rows * 255 // height, (rows + cols) % 256], axis=-1)
    image[height // 4 : height // 2, width // 4 : width // 2] = (40, 200, 90)
    return image.astype(np.uint8)


def load_sample_image(path: Path | None) -> np.ndarray:
    if path is None:
        return synthetic_sample_image()
    from d2_triton.imaging import decode_image

    return decode_image(path.read_bytes())


def model_input(cfg, image_bgr: np.ndarray) -> torch.Tensor:
    """Exactly what the `preprocess` model produces for this image."""
    resized = resize_shortest_edge(image_bgr, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    return torch.from_numpy(to_model_layout(resized, cfg.INPUT.FORMAT))


def raw_instances(model, image: torch.Tensor):
    """The model's instances in resized-image coordinates, before detector_postprocess.

    R-CNNs: ``GeneralizedRCNN.inference(do_postprocess=False)``, as Detectron2's exporter.
    Dense detectors (RetinaNet): ``DenseDetector.forward`` without its final
    ``detector_postprocess``, i.e. the same Detectron2 calls up to ``forward_inference``.
    """
    from detectron2.modeling import GeneralizedRCNN
    from detectron2.modeling.meta_arch.dense_detector import DenseDetector

    inputs = [{"image": image}]
    if isinstance(model, GeneralizedRCNN):
        return model.inference(inputs, do_postprocess=False)[0]
    if isinstance(model, DenseDetector):
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        features = [features[name] for name in model.head_in_features]
        predictions = model.head(features)
        return model.forward_inference(images, features, predictions)[0]
    raise SystemExit(f"unsupported meta-architecture {type(model).__name__}")


def describe_outputs(model, image: torch.Tensor) -> tuple[list[str], triton_config.ModelOutputs]:
    """Which Instances fields the model produces, and their per-instance shapes."""
    with torch.no_grad():
        instances = raw_instances(model, image)
    fields = [field for field in EXPORTED_FIELDS if instances.has(field)]
    outputs = triton_config.ModelOutputs(
        has_masks="pred_masks" in fields,
        mask_resolution=instances.pred_masks.shape[-1] if "pred_masks" in fields else 0,
        num_keypoints=instances.pred_keypoints.shape[1] if "pred_keypoints" in fields else 0,
    )
    return fields, outputs


@contextlib.contextmanager
def nms_dispatched_at_run_time():
    """Trace with torchvision's ``batched_nms`` scripted, so it keeps eager mode's choice.

    Eager ``batched_nms`` picks its algorithm by size and device (a per-class loop above
    4000 box coordinates on CPU, one NMS over class-offset boxes below).  Under tracing it
    always takes the offset trick, whose large offsets round box coordinates in float32 and
    so flip IoUs that sit on the threshold: the traced model then keeps or drops different
    boxes than Detectron2 does.  Scripted, torchvision's own function is recorded with its
    branch intact and decides at run time, exactly as eager Detectron2 does.
    """
    import torchvision.ops.boxes as box_ops

    original = box_ops.batched_nms
    box_ops.batched_nms = torch.jit.script(original)
    try:
        yield
    finally:
        box_ops.batched_nms = original


def trace(model, image: torch.Tensor, fields: list[str]) -> torch.jit.ScriptModule:
    """TracingAdapter + torch.jit.trace; outputs are the ``fields`` tensors, in order."""
    from detectron2.export.flatten import TracingAdapter

    def inference(traced_model, inputs):
        instances = raw_instances(traced_model, inputs[0]["image"])
        return tuple(_field_tensor(instances, field) for field in fields)

    adapter = TracingAdapter(model, [{"image": image}], inference)
    with torch.no_grad(), nms_dispatched_at_run_time():
        return torch.jit.trace(adapter, (image,), check_trace=False)


def _field_tensor(instances, field: str) -> torch.Tensor:
    value = instances.get(field)
    return value.tensor if field == "pred_boxes" else value


def verify_trace(model, traced, image: torch.Tensor, fields: list[str]) -> int:
    """The traced file must give what the eager model gives on the sample; returns N."""
    with torch.no_grad():
        eager = raw_instances(model, image)
        outputs = traced(image)
    for field, output in zip(fields, outputs, strict=True):
        expected = _field_tensor(eager, field)
        same = output.shape == expected.shape and torch.allclose(
            output.float(), expected.float(), atol=1e-4
        )
        if not same:
            raise SystemExit(f"traced model disagrees with eager Detectron2 on {field}")
    return len(eager)


def freeze(traced: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Inline the weights as constants so TorchScript folds each frozen BatchNorm into its
    convolution and drops the per-call attribute lookups: ~1.2x faster on CPU (see
    benchmarks/README.md).  The folded weights round differently: boxes move by thousandths
    of a pixel (``verify_frozen`` bounds it on the sample), but mask pixels and keypoint
    argmaxes that sit on a decision boundary can flip, so it is opt-in."""
    return torch.jit.freeze(traced.eval())


def verify_frozen(traced, frozen, image: torch.Tensor, fields: list[str]) -> None:
    """Same instances (paired by class and closest box) within 0.01 px and 1e-4 score."""
    with torch.no_grad():
        before = dict(zip(fields, traced(image), strict=True))
        after = dict(zip(fields, frozen(image), strict=True))
    if before["pred_boxes"].shape != after["pred_boxes"].shape:
        raise SystemExit("freezing changed the number of detections on the sample")
    unmatched = set(range(len(after["scores"])))
    for index in range(len(before["scores"])):
        candidates = [
            j for j in unmatched if after["pred_classes"][j] == before["pred_classes"][index]
        ]
        errors = [
            (after["pred_boxes"][j] - before["pred_boxes"][index]).abs().max() for j in candidates
        ]
        best = candidates[int(torch.stack(errors).argmin())] if candidates else None
        if (
            best is None
            or min(errors) > 0.01
            or (abs(after["scores"][best] - before["scores"][index]) > 1e-4)
        ):
            raise SystemExit(f"freezing changed detection {index} on the sample; drop --freeze")
        unmatched.discard(best)


def label_map_from_metadata(cfg) -> LabelMap:
    from detectron2.data import MetadataCatalog

    if not cfg.DATASETS.TEST:
        raise SystemExit("config has no DATASETS.TEST for class names; pass --label-map")
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
    names = metadata.get("thing_classes", None)
    if not names:
        raise SystemExit(
            f"no thing_classes in metadata of {cfg.DATASETS.TEST[0]}; pass --label-map"
        )
    return LabelMap.from_names(names)


def write_repository(
    repository: Path,
    traced,
    cfg,
    fields: list[str],
    outputs: triton_config.ModelOutputs,
    labels: LabelMap,
    weights: WeightsInfo,
    args: argparse.Namespace,
    info: dict,
) -> list[Path]:
    """Write every file of the model repository; returns the paths written."""
    instances = triton_config.InstanceSettings(
        detector_kind=args.device,
        detector_count=args.detector_instances,
        detector_threads=args.detector_threads,
        preprocess_count=args.preprocess_instances,
        postprocess_count=args.postprocess_instances,
    )
    configs = {
        schema.PREPROCESS_MODEL: triton_config.preprocess_config(
            min_size_test=cfg.INPUT.MIN_SIZE_TEST,
            max_size_test=cfg.INPUT.MAX_SIZE_TEST,
            input_format=cfg.INPUT.FORMAT,
            max_image_bytes=args.max_image_bytes,
            max_image_pixels=args.max_image_pixels,
            label_map_file=f"../{schema.POSTPROCESS_MODEL}/{LABEL_MAP_FILE}",
            count=instances.preprocess_count,
        ),
        schema.DETECTOR_MODEL: triton_config.detector_config(
            outputs=outputs,
            output_fields=fields,
            torchscript_file=TORCHSCRIPT_FILE,
            weights_source=weights.source,
            instances=instances,
        ),
        schema.POSTPROCESS_MODEL: triton_config.postprocess_config(
            outputs=outputs,
            label_map_file=LABEL_MAP_FILE,
            default_score_threshold=args.default_score_threshold,
            default_mask_format="rle",
            count=instances.postprocess_count,
        ),
        schema.ENSEMBLE_MODEL: triton_config.ensemble_config(outputs),
    }
    written = []
    for name, config in configs.items():
        version_dir = repository / name / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        template = TEMPLATE_REPOSITORY / name / "1" / "model.py"
        if template.is_file() and template.resolve() != (version_dir / "model.py").resolve():
            shutil.copyfile(template, version_dir / "model.py")
            written.append(version_dir / "model.py")
        config_path = repository / name / "config.pbtxt"
        config_path.write_text(triton_config.to_pbtxt(config), encoding="utf-8")
        written.append(config_path)
    torchscript_path = repository / schema.DETECTOR_MODEL / "1" / TORCHSCRIPT_FILE
    torch.jit.save(traced, str(torchscript_path))
    written.append(torchscript_path)
    label_path = repository / schema.POSTPROCESS_MODEL / LABEL_MAP_FILE
    labels.write(label_path)
    written.append(label_path)
    info_path = repository / EXPORT_INFO_FILE
    info = {**info, "torchscript_sha256": _sha256(torchscript_path)}
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    written.append(info_path)
    return written


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    started = time.perf_counter()
    detectron2 = import_detectron2()
    for shim in shims_in_use():
        LOGGER.info("detectron2 shim: %s", shim)
    cfg = load_config(args.config, args.opts, args.score_thresh_test)
    weights_location = resolve_weights(args.weights, args.config)
    model, weights = build_model(cfg, weights_location, args.seed, args.fallback_random)
    image = model_input(cfg, load_sample_image(args.sample_image))
    fields, outputs = describe_outputs(model, image)
    traced = trace(model, image, fields)
    sample_detections = verify_trace(model, traced, image, fields)
    if args.freeze:
        frozen = freeze(traced)
        verify_frozen(traced, frozen, image, fields)
        traced = frozen
    labels = LabelMap.from_file(args.label_map) if args.label_map else label_map_from_metadata(cfg)
    info = {
        "config": args.config,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "weights": asdict(weights),
        "input_format": cfg.INPUT.FORMAT,
        "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
        "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
        "score_thresh_test": _score_thresh(cfg),
        "output_fields": fields,
        "frozen": args.freeze,
        "num_classes": len(labels),
        "detectron2_version": detectron2.__version__,
        "detectron2_shims": shims_in_use(),
        "torch_version": torch.__version__,
        "config_options": list(args.opts),
    }
    written = write_repository(
        args.repository, traced, cfg, fields, outputs, labels, weights, args, info
    )
    random_init = weights.source == "random"
    source = f"RANDOM weights (seed {args.seed})" if random_init else weights.location
    print(
        f"exported {cfg.MODEL.META_ARCHITECTURE} ({args.config}) with {source}; "
        f"outputs {', '.join(fields)}; traced model matches eager on the sample "
        f"({sample_detections} detections) in {time.perf_counter() - started:.1f}s. Wrote:"
    )
    for path in written:
        print(f"  {path}")
    return 0


def _score_thresh(cfg) -> float:
    if cfg.MODEL.META_ARCHITECTURE == "RetinaNet":
        return cfg.MODEL.RETINANET.SCORE_THRESH_TEST
    return cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST


if __name__ == "__main__":
    sys.exit(main())
