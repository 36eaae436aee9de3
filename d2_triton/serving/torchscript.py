"""TorchScript, used on purpose, without the deprecation warnings torch 2.x gives for it.

This torch deprecates ``torch.jit`` (a ``FutureWarning`` at every trace, script, save and
load).  The project writes and runs TorchScript deliberately: it is the format that keeps
Detectron2's dynamic glue (proposal selection, NMS, ROI pooling) as Detectron2 runs it, and
``torch.export`` cannot yet capture it (docs/export.md).  So the warning is filtered only
around those calls, by its own message; every other warning, TorchScript's others included,
still shows.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

# torch's message: "`torch.jit.load` is deprecated. Please switch to `torch.compile` ...".
DEPRECATED = r"`torch\.jit\.\w+` is deprecated"


@contextmanager
def on_purpose(tracing: bool = False) -> Iterator[None]:
    """A block that uses TorchScript deliberately: its deprecation warning is not shown.

    With ``tracing``, neither are the tracer's warnings that a Python value becomes a
    constant of the trace (dozens per Detectron2 model): the export checks every trace
    against the eager model and refuses one that differs, which says more than they do.
    ``warnings.catch_warnings`` is process-wide; the blocks run at start-up and export, not
    beside other threads' work.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", DEPRECATED, FutureWarning)
        if tracing:
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def load(path: Path, device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """A TorchScript file, loaded in eval mode onto ``device``."""
    with on_purpose():
        return torch.jit.load(str(path), map_location=device).eval()
