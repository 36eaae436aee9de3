"""The trained shapes model and its exports: where each lives, how each is made.

``TRAINING`` is the benchmark's recipe (what the docs quote), ``SUITE_TRAINING`` the test
suite's shorter one; each variant (``VARIANTS``) is exported by the real export CLI as the
pipeline of its name, all in one cached repository.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

from d2_triton.cache import CHECKOUT, cache_dir
from d2_triton.testing.building import building
from d2_triton.testing.fingerprint import export_fingerprint
from training import shapes, train

CACHE = cache_dir()
TRAINED = CACHE / "trained" / "shapes"
EXPORTS = CACHE / "accuracy-exports"
DATA = train.default_data_dir(TRAINED)
# How the measured model is trained: on one thread, so that the test suite can train it in
# the background beside its other tests (tests/helpers/background.py).  Two threads that
# share two cores with the suite stall at every parallel region (each waits for the other,
# which the scheduler gave to a test): 7 s an iteration instead of 1.1 s on one thread.
# A model trained on torch's default threads (docs/your-own-model.md's command) has the same
# key and is used as it is.
TRAINING = train.TrainingSpec(threads=1)
# The test suite's model (tests/integration/test_accuracy.py, test_page.py): the same model,
# data and schedule shape, 300 iterations instead of 1500 (a fifth of the training: ~180 s of
# one core on the AVX-512 EPYC, where 600 were the suite's critical path).  What the suite
# checks is that the served variants score as Detectron2 does and that the model learned
# (AP50 ~30 against a random model's ~0 and the full recipe's ~93; on the AMD EPYC with
# AVX-512, default and exact exports equal to the digit, bf16 within 0.08 AP, int8 within
# 0.3), not how well it learned; TRAINING's model, measured by this benchmark, is what the
# docs quote.
SUITE_TRAINING = train.TrainingSpec(max_iter=300, threads=1)


def model_folder(spec: train.TrainingSpec) -> Path:
    """Where ``spec``'s model is kept: TRAINED for TRAINING's, a folder of its own else."""
    if dataclasses.replace(spec, threads=TRAINING.threads) == TRAINING:
        return TRAINED  # the thread count is not part of the model (train.TrainingSpec)
    name = f"shapes-{spec.max_iter}it-{spec.images_per_batch}img-lr{spec.base_lr}-seed{spec.seed}"
    return TRAINED.with_name(name)


def shown(path: Path) -> str:
    """``path`` relative to the checkout when inside it (the exports run there), else whole."""
    return str(path.relative_to(CHECKOUT)) if path.is_relative_to(CHECKOUT) else str(path)


# Export options of each variant; "default" is what a fresh export gives; int8 calibrates on
# the train split (scored, like every variant, on val).
VARIANTS = {
    "default": (),
    "exact": ("--exact",),
    "bf16": ("--precision", "bf16"),
    "int8": (
        "--precision",
        "int8",
        "--calibration",
        shown(shapes.splits(DATA)["train"].image_root),
    ),
}


def trained_model(spec: train.TrainingSpec = TRAINING) -> Path:
    """The trained model's folder (config.yaml, model_final.pth), training it if needed."""
    from export_tools.detectron2_setup.shims import import_detectron2

    import_detectron2()
    return train.train(model_folder(spec), DATA, spec)


def variants_repository(model: Path, variants: dict[str, tuple[str, ...]], work: Path) -> Path:
    """Where :func:`export_variants` keeps the repository of these variants."""
    key = json.loads((model / train.INFO_FILE).read_text())["key"]
    described = [f"{name}={' '.join(options)}" for name, options in variants.items()]
    return work / f"variants-{key}-{export_fingerprint(*described)}"


def export_command(model: Path, repository: Path, *options: str) -> list[str]:
    """The export command line for the trained model, into ``repository``."""
    return [
        sys.executable,
        "-m",
        "export_tools.export",
        "--config",
        str(model / train.CONFIG_FILE),
        "--weights",
        str(model / train.CHECKPOINT_FILE),
        "--repository",
        str(repository),
        *options,
    ]


def export_variants(model: Path, variants: dict[str, tuple[str, ...]], work: Path) -> Path:
    """Each variant exported by the real CLI as the pipeline of its name, in one repository.

    One server answers for all; the repository is cached by training and export.
    """
    repository = variants_repository(model, variants, work)
    with building(repository):  # the test suite makes it in the background too
        if repository.is_dir():
            return repository
        partial = repository.with_name(repository.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        val = shapes.splits(DATA)["val"]
        dataset = ("--coco-dataset", val.name, str(val.json_file), str(val.image_root))
        for name, options in variants.items():
            command = export_command(model, partial, "--name", name, *dataset, *options)
            subprocess.run(command, cwd=CHECKOUT, check=True)
        partial.rename(repository)  # only a repository with every variant has the final name
        return repository
