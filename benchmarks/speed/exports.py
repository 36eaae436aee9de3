"""What a speed benchmark serves.

The default model's export, a variant's copy of a repository, and the settings that copy
runs with.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from d2_triton.cache import CHECKOUT, cache_dir
from d2_triton.model_config import DetectorParameters
from d2_triton.names import DETECTOR_MODEL, POSTPROCESS_MODEL, PREPROCESS_MODEL
from d2_triton.testing.fingerprint import export_fingerprint
from export_tools.repository import configs
from export_tools.repository import derive as repository_tools
from export_tools.repository.writer import export_info_path

DEFAULT_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"


def work_folder(name: str) -> Path:
    """The speed benchmarks' working folder ``name``.

    A run's (``run --variant``) holds its copy of the repository, photos, inputs and
    ``eager.json``, which ``precision`` hands to its later runs.
    """
    return cache_dir() / "bench-work" / name


def default_repository(*options: str) -> Path:
    """The default model exported with ``options`` (cached by them and the exporter's code)."""
    key = export_fingerprint(*options)
    repository = cache_dir() / "bench-exports" / f"mask_rcnn_R_50_FPN_3x-{key}"
    if not export_info_path(repository).is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "export_tools.export",
                "--config",
                DEFAULT_CONFIG,
                "--weights",
                "zoo",
                "--fallback-random",
                "--repository",
                str(repository),
                *options,
            ],
            cwd=CHECKOUT,
            check=True,
        )
    return repository


def variant_repository(source: Path, target: Path, args: argparse.Namespace) -> Path:
    """A copy of ``source`` with this variant's instance and thread settings."""
    return repository_tools.derive(
        source,
        target,
        repository_tools.Overrides(
            detector_instances=args.detector_instances,
            detector_threads=args.detector_threads,
            preprocess_instances=args.preprocess_instances,
            postprocess_instances=args.postprocess_instances,
        ),
    )


def settings_of(repository: Path, args: argparse.Namespace) -> dict:
    """The instances, threads and backend settings ``repository`` is served with."""
    settings = {}
    for model in (PREPROCESS_MODEL, DETECTOR_MODEL, POSTPROCESS_MODEL):
        config = configs.parse_pbtxt((repository / model / "config.pbtxt").read_text())
        settings[f"{model}_instances"] = config.instance_group[0].count
    detector = configs.read_parameters(
        DetectorParameters, repository / DETECTOR_MODEL / "config.pbtxt"
    )
    settings["detector_threads"] = detector.intra_op_threads
    settings["backend_config"] = backend_config(args)
    return settings


def backend_config(args: argparse.Namespace) -> list[str]:
    """The Python backend's shared-memory settings (``--backend-config``) of this variant."""
    config = []
    if args.shm_default_mb:
        config.append(f"python,shm-default-byte-size={args.shm_default_mb * 1024 * 1024}")
    if args.shm_growth_mb:
        config.append(f"python,shm-growth-byte-size={args.shm_growth_mb * 1024 * 1024}")
    return config
