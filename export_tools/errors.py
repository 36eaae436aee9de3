"""What the exporter raises: one ``ExportError`` per way an export can fail.

The library raises them; only the command line (``export_tools.export``) turns one into an
exit status and a message.
"""

from d2_triton.errors import D2TritonError


class ExportError(D2TritonError):
    """An export that cannot be done as asked; the message says why and what to do."""


class ConfigError(ExportError):
    """The Detectron2 config, its options or the export settings do not fit together."""


class WeightsError(ExportError):
    """The checkpoint cannot be found or loaded."""


class UnsupportedModelError(ExportError):
    """The meta-architecture is not one the exporter knows how to trace."""


class TraceMismatchError(ExportError):
    """The traced (or frozen) model does not answer as the eager model does on the sample."""


# How a TraceMismatchError of the staged split's check begins (``export_tools.trace.files``):
# a caller that can fall back to ``--exact`` (the zoo run) tells it from the others by it.
STAGES_MISMATCH = "stages: "


class LabelMapError(ExportError):
    """No class names: the label map cannot be read, or neither it nor the dataset gives any."""


class DatasetError(ExportError):
    """A dataset to register (``--coco-dataset``) cannot be read as COCO."""


class VersionMismatchError(ExportError):
    """A new version of a pipeline whose configs would differ from the served ones."""
