"""A Detectron2 model's config, from a yaml file or a LazyConfig ``.py``, as the export reads it.

Detectron2 has two config systems: the yaml ``CfgNode`` (``get_cfg`` + ``merge_from_file``,
options as KEY VALUE pairs) and LazyConfig (a Python file of ``LazyCall``s, loaded by
``LazyConfig.load``, overrides as ``key=value``), in which its newest model-zoo baselines
are written.  :func:`load_config` reads either, from a model-zoo name or a file, and gives a
:class:`DetectorConfig`: what the export needs to know (input format, test-time resize,
score threshold, test datasets) read the way Detectron2 itself reads it at test time, and
how to build the model.

Test time, per system:

* yaml: ``DefaultPredictor``: ``INPUT.FORMAT``, ``ResizeShortestEdge(MIN_SIZE_TEST,
  MAX_SIZE_TEST)``, ``MODEL.ROI_HEADS`` / ``MODEL.RETINANET.SCORE_THRESH_TEST``,
  ``DATASETS.TEST``.
* LazyConfig: the test data loader (``dataloader.test``): its mapper's ``image_format`` and
  ``augmentations`` (one ``ResizeShortestEdge``), its dataset ``names``; the score threshold
  is the model's own (its box predictors' ``test_score_thresh``, a dense detector's
  ``test_score_thresh``).  ``export_tools.predictors.LazyPredictor`` is
  ``DefaultPredictor`` with those.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from export_tools.errors import ConfigError
from export_tools.settings import one_line

LAZY_SUFFIX = ".py"


@dataclass(frozen=True)
class DetectorConfig:
    """A loaded config and what the export reads from it.

    Attributes:
        source: the ``--config`` given (a model-zoo name or a path).
        lazy: whether it is a LazyConfig (else yaml).
        node: the config itself (a frozen ``CfgNode``, or LazyConfig's ``DictConfig``).
        meta_architecture: the model's class name, e.g. ``GeneralizedRCNN``.
        input_format: the channel order the model takes (``BGR`` or ``RGB``).
        min_size_test: the test-time resize's short edge.
        max_size_test: the test-time resize's long-edge cap.
        test_datasets: the datasets the config tests on (their metadata names the classes).
        score_thresh_test: the score threshold to set, if not the config's own.
    """

    source: str
    lazy: bool
    node: Any
    meta_architecture: str
    input_format: str
    min_size_test: int
    max_size_test: int
    test_datasets: tuple[str, ...]
    score_thresh_test: float | None = None

    def build_model(self) -> torch.nn.Module:
        """The model in eval mode on the CPU, with Detectron2's initial weights.

        Raises:
            ConfigError: Detectron2 cannot build the model the config describes.
        """
        try:
            if not self.lazy:
                from detectron2.modeling import build_model

                return build_model(self.node).eval()
            from detectron2.config import instantiate

            model = instantiate(self.node.model).to("cpu").eval()
        except ImportError as error:  # e.g. mmdet for Detectron2's mmdetection wrapper
            raise ConfigError(f"--config {self.source}: {one_line(error)}") from None
        except (ValueError, TypeError, KeyError, AssertionError) as error:
            raise ConfigError(
                f"--config {self.source}: Detectron2 cannot build this model: "
                f"{type(error).__name__}: {one_line(error)}"
            ) from None
        if self.score_thresh_test is not None:
            set_score_thresh(model, self.score_thresh_test)
        return model


def load_config(config: str, options: list[str], score_thresh_test: float | None):
    """The :class:`DetectorConfig` of a model-zoo name or a file (yaml, or LazyConfig .py).

    ``options``: yaml KEY VALUE pairs, or LazyConfig ``key=value`` overrides.
    ``score_thresh_test``, if given, replaces the config's test-time score threshold.
    """
    path = config_path(config)
    if path.suffix == LAZY_SUFFIX:
        return _lazy(config, path, options, score_thresh_test)
    return _yaml(config, path, options, score_thresh_test)


def config_path(config: str) -> Path:
    """The file of ``config``: itself, or the model zoo's file of that name."""
    if Path(config).is_file():
        return Path(config)
    from detectron2 import model_zoo

    try:
        return Path(model_zoo.get_config_file(config))
    except Exception as error:  # RuntimeError: not in the model zoo
        raise ConfigError(f"--config {config}: {one_line(error)}") from None


def _yaml(config: str, path: Path, options: list[str], score_thresh_test: float | None):
    from detectron2.config import get_cfg

    cfg = get_cfg()
    try:
        cfg.merge_from_file(str(path))
    except Exception as error:  # bad YAML, unknown keys: all say why
        raise ConfigError(f"--config {config}: {one_line(error)}") from None
    try:
        cfg.merge_from_list(list(options))
    except Exception as error:
        raise ConfigError(f"config options {' '.join(options)}: {one_line(error)}") from None
    if score_thresh_test is not None:
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_thresh_test
        cfg.MODEL.RETINANET.SCORE_THRESH_TEST = score_thresh_test
    cfg.MODEL.DEVICE = "cpu"  # trace on CPU: the TorchScript file then has no device baked in
    cfg.freeze()
    return DetectorConfig(
        source=config,
        lazy=False,
        node=cfg,
        meta_architecture=cfg.MODEL.META_ARCHITECTURE,
        input_format=cfg.INPUT.FORMAT,
        min_size_test=cfg.INPUT.MIN_SIZE_TEST,
        max_size_test=cfg.INPUT.MAX_SIZE_TEST,
        test_datasets=tuple(cfg.DATASETS.TEST),
    )


def _lazy(config: str, path: Path, overrides: list[str], score_thresh_test: float | None):
    from detectron2.config import LazyConfig

    try:
        cfg = LazyConfig.load(str(path))
    except Exception as error:  # the file raised, or is not Python
        raise ConfigError(f"--config {config}: {one_line(error)}") from None
    if "model" not in cfg or "dataloader" not in cfg or "test" not in cfg.dataloader:
        raise ConfigError(
            f"--config {config}: not a Detectron2 LazyConfig model (it needs `model` and "
            "`dataloader.test`)"
        )
    apply_overrides(cfg, overrides)
    try:
        mapper = cfg.dataloader.test.mapper
        short_edge, max_size = _test_resize(mapper.augmentations)
        names = cfg.dataloader.test.dataset.names
        input_format = mapper.image_format
    except ConfigError:
        raise
    except Exception as error:  # a field missing or an interpolation that does not resolve
        raise ConfigError(f"--config {config}: dataloader.test: {one_line(error)}") from None
    return DetectorConfig(
        source=config,
        lazy=True,
        node=cfg,
        meta_architecture=_class_name(cfg.model),
        input_format=input_format,
        min_size_test=short_edge,
        max_size_test=max_size,
        test_datasets=(names,) if isinstance(names, str) else tuple(names),
        score_thresh_test=score_thresh_test,
    )


def apply_overrides(cfg, overrides: list[str]) -> None:
    """Apply LazyConfig ``key=value`` overrides, each checked first.

    Each must name a field the config has, or an argument of the object its parent node
    builds (``instantiate`` passes it on).
    Detectron2's ``LazyConfig.apply_overrides`` adds any field it does not find, so a typo
    would pass unnoticed; here it is an error.
    """
    from detectron2.config import LazyConfig

    for override in overrides:
        key, equals, _ = override.partition("=")
        if not equals:
            raise ConfigError(f"LazyConfig override {override!r}: key=value expected")
        if not _names_a_field(cfg, key.strip()):
            raise ConfigError(f"LazyConfig override {override!r}: the config has no {key}")
    try:
        LazyConfig.apply_overrides(cfg, list(overrides))
    except Exception as error:
        listed = " ".join(overrides)
        raise ConfigError(f"LazyConfig overrides {listed}: {one_line(error)}") from None


def _names_a_field(cfg, key: str) -> bool:
    """Whether ``key`` is in ``cfg``, or an argument its parent node's ``_target_`` takes."""
    import inspect

    from omegaconf import OmegaConf

    missing = object()
    if OmegaConf.select(cfg, key, default=missing) is not missing:
        return True
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    target = parent.get("_target_") if OmegaConf.is_dict(parent) else None
    if target is None or isinstance(target, str):
        return False
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return name in parameters or takes_any


def _test_resize(augmentations) -> tuple[int, int]:
    """(short edge, max size) of the one ``ResizeShortestEdge`` the test mapper applies."""
    from detectron2.data.transforms import ResizeShortestEdge

    names = [_class_name(aug) for aug in augmentations]
    if names != [ResizeShortestEdge.__name__]:
        raise ConfigError(
            f"the test-time augmentations {names} are "
            "not one ResizeShortestEdge, the resize the served preprocess reproduces"
        )
    resize = augmentations[0]
    short = resize.short_edge_length
    sizes = [short] if isinstance(short, int) else list(short)
    if len(set(sizes)) != 1:
        raise ConfigError(f"test-time ResizeShortestEdge has several sizes {sizes}; one expected")
    max_size = resize.get("max_size", sys.maxsize)  # ResizeShortestEdge's default: no cap
    return sizes[0], int(max_size)


def _class_name(node) -> str:
    target = node.get("_target_") if hasattr(node, "get") else None
    return getattr(target, "__name__", str(target).rsplit(".", 1)[-1])


def set_score_thresh(model, threshold: float) -> None:
    """Set a built model's test-time score threshold (R-CNN box predictors, dense heads)."""
    heads = getattr(model, "roi_heads", None)
    predictors = getattr(heads, "box_predictor", None)
    if predictors is not None:
        predictors = predictors if isinstance(predictors, torch.nn.ModuleList) else [predictors]
        for predictor in predictors:
            predictor.test_score_thresh = threshold
    elif hasattr(model, "test_score_thresh"):
        model.test_score_thresh = threshold


def _final_box_predictor(model):
    """The box predictor that makes an R-CNN's detections (Cascade: its last), or None."""
    predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    return predictor[-1] if isinstance(predictor, torch.nn.ModuleList) else predictor


def score_thresh(model) -> float:
    """A built model's test-time score threshold."""
    predictor = _final_box_predictor(model)
    if predictor is not None:
        return float(predictor.test_score_thresh)
    return float(getattr(model, "test_score_thresh", 0.0))  # a semantic segmentor has none


def detections_per_image(model) -> int:
    """The most detections a built model keeps per image (its top-k after NMS)."""
    predictor = _final_box_predictor(model)
    if predictor is not None:
        return int(predictor.test_topk_per_image)
    return int(getattr(model, "max_detections_per_image", 0))  # 0: no instances
