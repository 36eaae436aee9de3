"""Accuracy: COCO AP of the trained shapes model, Detectron2 against each served variant.

The command: ``python -m benchmarks.accuracy.run``.

``models`` (the training recipes, the trained model and its exports), ``scoring`` (COCO AP of
Detectron2's predictor and of the served pipelines), ``run`` (the command and its report).
The test suite trains ``SUITE_TRAINING``'s model and checks the same gates on it.
"""

from benchmarks.accuracy.models import (
    DATA,
    EXPORTS,
    SUITE_TRAINING,
    TRAINING,
    VARIANTS,
    export_command,
    export_variants,
    model_folder,
    trained_model,
    variants_repository,
)
from benchmarks.accuracy.run import measure
from benchmarks.accuracy.scoring import METRICS

__all__ = [
    "DATA",
    "EXPORTS",
    "METRICS",
    "SUITE_TRAINING",
    "TRAINING",
    "VARIANTS",
    "export_command",
    "export_variants",
    "measure",
    "model_folder",
    "trained_model",
    "variants_repository",
]
