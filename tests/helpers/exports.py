"""Exported model repositories for tests, built with the real export CLI and cached.

Weights: the exporter's fixed-seed random initialisation (Detectron2's own init with
calibrated frozen BatchNorms, see ``export_tools.random_init.build_random_model``) saved as a
checkpoint file, so the exporter loads it through its real "local .pth" path and the
Detectron2 reference loads the very same file.  A repository is rebuilt whenever the
exporter, the model templates, the d2_triton modules it imports or the arguments change
(their hash names the cache entry; see ``d2_triton.testing.fingerprint``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from d2_triton.cache import CHECKOUT, cache_dir
from d2_triton.testing.building import building
from d2_triton.testing.fingerprint import export_fingerprint
from export_tools.repository.derive import Overrides, derive

REPO_ROOT = CHECKOUT
CACHE = cache_dir() / "test-exports"
SEED = 0
# Low enough that Detectron2's random initialisation still yields detections on photos.
SCORE_THRESH_TEST = 0.01


@dataclass(frozen=True)
class Architecture:
    """A test model: its zoo config and the Detectron2 options each export and reference
    of it gets (``options``, KEY VALUE pairs, after any others)."""

    key: str
    config: str
    has_masks: bool = False
    has_keypoints: bool = False
    options: tuple[str, ...] = ()
    export_options: tuple[str, ...] = ()  # export CLI options (e.g. --exact)
    segmentation: str = "none"  # what its ensemble segments (names.SEGMENTATIONS)


ARCHITECTURES = {
    arch.key: arch
    for arch in (
        Architecture("mask_rcnn", "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml", True),
        Architecture("faster_rcnn", "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"),
        Architecture("retinanet", "COCO-Detection/retinanet_R_50_FPN_3x.yaml"),
        # 25 detections, not Detectron2's 100: with random weights all 100 pass the 0.01 cut,
        # and the keypoint head (eight 512-channel convolutions per instance) then took an
        # image at 800 px from 3.6 s to 6.1 s in DefaultPredictor, and as much served.
        Architecture(
            "keypoint_rcnn",
            "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml",
            has_keypoints=True,
            options=("TEST.DETECTIONS_PER_IMAGE", "25"),
        ),
    )
}


def seeded_checkpoint(arch: Architecture, seed: int = SEED) -> Path:
    """The exporter's random initialisation under ``seed``, saved like a trained checkpoint."""
    init_code = hashlib.sha256((REPO_ROOT / "export_tools" / "random_init.py").read_bytes())
    # Named by config, not by key: an architecture and its variants share the weights.
    name = Path(arch.config).stem
    path = CACHE / "weights" / f"{name}-seed{seed}-{init_code.hexdigest()[:12]}.pth"
    with building(path):
        if path.is_file():
            return path
        import torch

        from export_tools.detectron2_setup.shims import import_detectron2

        import_detectron2()
        from export_tools.detector_config import load_config
        from export_tools.random_init import build_random_model

        model = build_random_model(load_config(arch.config, [], None), seed)
        partial = path.with_suffix(".partial")
        torch.save({"model": model.state_dict()}, partial)
        partial.rename(path)
        return path


def export_args(arch: Architecture, weights: Path, repository: Path, *extra: str) -> list[str]:
    return [
        "--config",
        arch.config,
        "--weights",
        str(weights),
        "--repository",
        str(repository),
        "--score-thresh-test",
        str(SCORE_THRESH_TEST),
        *extra,
        *arch.options,
    ]


def _export_key(arch: Architecture, *parts: str) -> str:
    """The cache key of an export of ``arch``: the exporter's code and every input."""
    return export_fingerprint(arch.config, str(SCORE_THRESH_TEST), *arch.options, *parts)


def exported_repository(arch: Architecture, *extra: str) -> Path:
    """A model repository for ``arch``, exported by the real CLI (cached by content)."""
    key = _export_key(arch, str(SEED), *extra)
    variant = "".join(f"{arg.strip('-')}-" for arg in extra)
    return _cached_export(f"{arch.key}-{variant}", key, arch, seeded_checkpoint(arch), extra)


# The plumbing export (conftest's ``fast_repository``): the Mask R-CNN exported with
# PLUMBING_OPTIONS, fewer proposals and detections at a smaller input size, and so served.
# With random weights nearly every proposal passes the 0.01 score cut: Detectron2's defaults
# run the box head on 1000 proposals and the mask head, the paste and the RLE encoding on 100
# detections per image, whatever the input size.  Fewer of both took an image at 320 px from
# 1.2 s to 0.45 s here; 25 detections still leave more than the gateway tests need (> 20).
#
# PLUMBING_SIZE: (min_size_test, max_size_test).  What the plumbing tests check depends on no
# input size (the images go through the same resize, stages and paste at any); the size sets
# what an image costs, and with it most of those tests' CPU: the detector took 863 ms for a
# 320x512 input and 478 ms for 192x288 on one core of the AMD EPYC with AVX-512 (the rest is
# the heads' cost at 100 proposals and 25 detections).  The exports are made at that size
# too, so their tracing checks and an int8 export's calibration run at it: the int8 export of
# the several pipelines took 19.5 s instead of 57 s at Detectron2's 800, a float32 Mask R-CNN
# 8 s instead of 18.  320x533, and exports at 800, until 2026-12-07.
PLUMBING_SIZE = (192, 320)
PLUMBING_SIZE_OPTIONS = (
    "INPUT.MIN_SIZE_TEST",
    str(PLUMBING_SIZE[0]),
    "INPUT.MAX_SIZE_TEST",
    str(PLUMBING_SIZE[1]),
)
# What every plumbing export is made with, and DefaultPredictor given to answer as it does.
PLUMBING_OPTIONS = (
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "100",
    "TEST.DETECTIONS_PER_IMAGE",
    "25",
    *PLUMBING_SIZE_OPTIONS,
)


# One model of each family beyond the parity suite's four architectures, exported staged
# (their default mode) at the plumbing size and settings: Cascade R-CNN (yaml), a
# LazyConfig model, the LSJ baseline (SyncBN, a 4conv1fc box head, a 2-conv RPN head),
# Panoptic FPN (also --exact, which must answer pixel for pixel) and the semantic FPN.
PANOPTIC_CONFIG = "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml"
FAMILIES = {
    arch.key: arch
    for arch in (
        Architecture(
            "cascade-mask-rcnn",
            "Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml",
            True,
            options=PLUMBING_OPTIONS,
        ),
        Architecture(
            "lazy-mask-rcnn-lsj",
            "new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py",
            True,
            options=(
                "model.proposal_generator.post_nms_topk=[2000,100]",
                "model.roi_heads.box_predictor.test_topk_per_image=25",
                f"dataloader.test.mapper.augmentations.0.short_edge_length={PLUMBING_SIZE[0]}",
                f"dataloader.test.mapper.augmentations.0.max_size={PLUMBING_SIZE[1]}",
            ),
        ),
        Architecture(
            "panoptic-fpn",
            PANOPTIC_CONFIG,
            True,
            options=PLUMBING_OPTIONS,
            segmentation="panoptic",
        ),
        Architecture(
            "panoptic-fpn-exact",
            PANOPTIC_CONFIG,
            True,
            options=PLUMBING_OPTIONS,
            export_options=("--exact",),
            segmentation="panoptic",
        ),
        Architecture(
            "semantic-fpn",
            "Misc/semantic_R_50_FPN_1x.yaml",
            options=PLUMBING_SIZE_OPTIONS,
            segmentation="semantic",
        ),
    )
}


def families_repository() -> Path:
    """The FAMILIES' exports as pipelines of one repository, each named by its key.

    Each goes in by the real CLI with ``--name``, into a copy of the repository before it,
    so that one server serves them all.
    """
    repository = None
    for arch in FAMILIES.values():
        extra = ("--name", arch.key, *arch.export_options)
        base = () if repository is None else (repository.name,)
        key = _export_key(arch, str(SEED), *base, *extra)
        weights = seeded_checkpoint(arch)
        repository = _cached_export(f"{arch.key}-family-", key, arch, weights, extra, repository)
    return repository


# The second and third pipelines of the several-pipelines repository: exported with --name.
SECOND_PIPELINE = "keypoints"
INT8_PIPELINE = "int8"


def several_pipelines_repository() -> Path:
    """The plumbing Mask R-CNN export (default pipeline), Keypoint R-CNN beside it, and the
    same Mask R-CNN exported again with ``--precision int8`` as pipeline ``int8``.

    The others go in by the real CLI with ``--name`` (and the plumbing options), each into a
    copy of the repository before it (model files hard-linked), as a user adds a model to a
    server; all are served at the plumbing size.  The int8 export calibrates on the test
    photos (``helpers.photos``).
    """
    source = exported_repository(ARCHITECTURES["mask_rcnn"], *PLUMBING_OPTIONS)
    arch = ARCHITECTURES["keypoint_rcnn"]
    key = _export_key(arch, str(SEED), source.name, *PLUMBING_OPTIONS)
    extra = ("--name", SECOND_PIPELINE, *PLUMBING_OPTIONS)
    two = _cached_export("two-pipelines-", key, arch, seeded_checkpoint(arch), extra, source)
    arch = ARCHITECTURES["mask_rcnn"]
    calibration = calibration_photos()
    # Two detector instances: the watchdog test kills one and checks the survivor's end.
    options = ("--precision", "int8", "--detector-instances", "2")
    key = _export_key(arch, str(SEED), two.name, *PLUMBING_OPTIONS, *options)
    extra = ("--name", INT8_PIPELINE, *options, "--calibration", str(calibration))
    three = _cached_export(
        "three-pipelines-", key, arch, seeded_checkpoint(arch), (*extra, *PLUMBING_OPTIONS), two
    )
    return derive(three, CACHE / "several-pipelines-served", plumbing_overrides())


def calibration_photos() -> Path:
    """The test photos in a folder of their own, as ``export --calibration`` reads them."""
    from helpers.photos import write_photos

    folder = CACHE / "calibration-photos"
    write_photos(folder)
    return folder


def at_plumbing_size(arch: Architecture) -> Architecture:
    """``arch`` exported and predicted as the plumbing export is: at PLUMBING_SIZE, fewer
    proposals and detections (Detectron2 config options, in the export and the reference)."""
    return dataclasses.replace(
        arch,
        key=f"{arch.key}-{PLUMBING_SIZE[0]}",
        options=(*PLUMBING_OPTIONS, *arch.options),
    )


def plumbing_overrides() -> Overrides:
    """PLUMBING_SIZE as ``derive`` overrides: the size the plumbing exports are made at, for
    the served copies the tests derive from them (which they may change)."""
    return Overrides(min_size_test=PLUMBING_SIZE[0], max_size_test=PLUMBING_SIZE[1])


# The --exact export's pipeline in ``both_modes_repository``.
EXACT_PIPELINE = "exact"


def both_modes_repository(arch: Architecture) -> Path:
    """``arch``'s default export plus its ``--exact`` export beside it as pipeline "exact".

    One server answers in both modes (a server start costs ~15 s here); the exact export
    goes in by the real CLI with ``--exact --name exact``, into a copy of the default one.
    """
    source = exported_repository(arch)
    key = _export_key(arch, str(SEED), source.name)
    extra = ("--exact", "--name", EXACT_PIPELINE)
    return _cached_export(
        f"{arch.key}-both-modes-", key, arch, seeded_checkpoint(arch), extra, source
    )


def two_version_repository(arch: Architecture) -> Path:
    """``arch``'s plumbing export (detector version 1, seed 0) plus version 2 (seed 1).

    Version 2 goes in by the real CLI into a copy of the cached export (model files
    hard-linked), as a user ships new weights for a served model; both with the plumbing
    options.
    """
    source = exported_repository(arch, *PLUMBING_OPTIONS)
    key = _export_key(arch, "seed-1", source.name, *PLUMBING_OPTIONS)
    weights = seeded_checkpoint(arch, seed=1)
    return _cached_export(f"{arch.key}-two-versions-", key, arch, weights, PLUMBING_OPTIONS, source)


def _cached_export(
    prefix: str,
    key: str,
    arch: Architecture,
    weights: Path,
    extra: tuple[str, ...],
    base: Path | None = None,
) -> Path:
    """``CACHE/<prefix><key>``: the real export CLI run once, into a copy of ``base``.

    The command line's own ``main`` runs in this process, whose interpreter has torch,
    Detectron2 and OpenVINO imported already (a new one spent ~5 s of each ~25 s export on
    imports).  The export goes into a ``.partial`` folder (a hard-linked copy of ``base``,
    or nothing) renamed when it succeeded, so a folder under the final name is complete;
    entries of the same prefix under an older key are removed.
    """
    repository = CACHE / f"{prefix}{key}"
    with building(repository):
        if repository.is_dir():
            return repository
        for stale in CACHE.glob(prefix + "?" * len(key)):
            shutil.rmtree(stale, ignore_errors=True)
        partial = repository.with_name(repository.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        if base is not None:
            shutil.copytree(base, partial, copy_function=os.link)
        from export_tools import export as export_command

        status = export_command.main(export_args(arch, weights, partial, *extra))
        assert status == 0, f"export of {arch.config} {' '.join(extra)} failed (status {status})"
        partial.rename(repository)
        return repository
