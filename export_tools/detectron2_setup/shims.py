"""Import the real Detectron2 for export, with small, explicit shims where it falls short.

A full Detectron2 install (``pip install 'git+https://github.com/facebookresearch/detectron2.git'``)
needs neither shim and gets none.  Where GitHub is out of reach,
``export_tools/detectron2_setup/install.py`` puts Detectron2 v0.6's Python sources on the path from
PyPI (the ``pb1-detectron2==0.6`` sdist, hash-pinned), which lacks the C++ extension.  That
install is complete for what this project uses (Mask/Faster/Keypoint R-CNN and RetinaNet run
on torchvision's ops), except:

1. ``detectron2._C`` does not exist, yet ``layers/deform_conv.py`` (and the rotated-box
   ops) import it when ``detectron2.layers`` is imported.  We register a placeholder
   module that raises a clear error if any of its ops is actually called.
2. ``detectron2/export/__init__.py`` in v0.6 imports the Caffe2 exporter, hence ``caffe2``,
   which modern torch no longer ships.  We make ``detectron2.export`` importable as a
   plain namespace so ``detectron2.export.flatten.TracingAdapter`` (which needs no Caffe2)
   can be imported; nothing else in the package is touched or re-implemented.

A third shim concerns Detectron2 v0.6 with any recent torch, full install or not:

3. ``RetinaNetHead`` (and so FCOS, whose head is one) learns the type of its norm by building
   one for a single channel, ``get_norm(norm, 1)``; for ``"GN"`` that is ``GroupNorm(32, 1)``,
   which torch has refused since 1.x.  The head module's ``get_norm`` answers that one probe
   with a ``GroupNorm`` of one group (the same type); every real norm is Detectron2's own.

Nothing is written into Detectron2's files; the shims live in ``sys.modules`` only, and
``shims_in_use()`` reports which were needed so the exporter can say so.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

from d2_triton.errors import D2TritonError

_shims: list[str] = []


class MissingCppExtensionError(D2TritonError, RuntimeError):
    """A Detectron2 C++ op was called, which the sources-only install lacks."""


class _MissingCppExtension(types.ModuleType):
    """Stands in for ``detectron2._C``; any op lookup raises with an explanation."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise MissingCppExtensionError(
            f"detectron2._C.{name} is unavailable: this Detectron2 was installed from its "
            "Python sources without the C++ extension, which only modulated or grouped "
            "deformable convolution and rotated-box ops need. Install Detectron2 from GitHub "
            "to use those models."
        )


def import_detectron2() -> types.ModuleType:
    """Import ``detectron2`` and make ``detectron2.export.flatten`` importable."""
    detectron2 = importlib.import_module("detectron2")
    if "detectron2._C" not in sys.modules:
        try:
            importlib.import_module("detectron2._C")
        except ImportError:
            sys.modules["detectron2._C"] = _MissingCppExtension("detectron2._C")
            detectron2._C = sys.modules["detectron2._C"]
            _shims.append("detectron2._C placeholder (no C++ extension installed)")
    _group_norm_probe()
    if "detectron2.export" not in sys.modules:
        try:
            importlib.import_module("detectron2.export")
        except ImportError as error:
            _register_namespace("detectron2.export", Path(detectron2.__file__).parent / "export")
            _shims.append(f"detectron2.export entered without its __init__ ({error})")
    return detectron2


def _group_norm_probe() -> None:
    """Shim 3: ``get_norm("GN", 1)`` in the RetinaNet head module gives ``GroupNorm(1, 1)``."""
    from d2_triton.serving import torchscript

    with torchscript.on_purpose():  # Detectron2 scripts a few functions as it is imported
        from detectron2.modeling.meta_arch import retinanet

    original = retinanet.get_norm
    if getattr(original, "d2t_shim", False):
        return

    def get_norm(norm, out_channels):
        if norm == "GN" and out_channels == 1:  # the type probe, never a layer of the model
            note = "RetinaNetHead's GroupNorm type probe answered with GroupNorm(1, 1)"
            if note not in _shims:
                _shims.append(note)
            import torch

            return torch.nn.GroupNorm(1, 1)
        return original(norm, out_channels)

    get_norm.d2t_shim = True
    retinanet.get_norm = get_norm


def _register_namespace(name: str, directory: Path) -> None:
    """Make ``name`` a package whose submodules load from ``directory``, skipping __init__."""
    for key in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
        del sys.modules[key]  # drop the half-imported package left by the failed import
    package = types.ModuleType(name)
    package.__path__ = [str(directory)]
    package.__package__ = name
    spec = importlib.util.spec_from_loader(name, loader=None, is_package=True)
    spec.submodule_search_locations = [str(directory)]
    package.__spec__ = spec
    sys.modules[name] = package


def shims_in_use() -> list[str]:
    """Which shims ``import_detectron2`` put in place (empty with a full install)."""
    return list(_shims)
