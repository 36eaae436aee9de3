"""The exceptions d2-triton raises, in one hierarchy.

``D2TritonError`` is the root: catch it to catch anything this project raises on purpose
(the exporter's ``ExportError``, the gateway's ``SettingsError`` and ``GatewayError`` and the
Detectron2 shims' ``MissingCppExtensionError`` derive from it too).  Each class also derives
from the builtin that describes it (``ValueError`` for a value that cannot be used,
``RuntimeError`` for a process that failed), so code catching the builtin still works.
Standard library only: the Docker image's first layer imports it.
"""


class D2TritonError(Exception):
    """Base of every error d2-triton raises on purpose."""


class InvalidArgumentError(D2TritonError, ValueError):
    """A value given to a d2-triton function, class or command that it cannot use."""


class InvalidRequestError(D2TritonError, ValueError):
    """A request the server refuses; its message is returned to the client as-is.

    The Triton models turn it into a per-request ``TritonError(INVALID_ARG)`` (HTTP 400),
    while any other exception is a server fault (HTTP 500) and is logged with its traceback.
    """


class LabelMapFormatError(D2TritonError, ValueError):
    """A label-map file or object that is not a list of names or an ``{id: name}`` object."""


class UnknownClassError(D2TritonError, KeyError):
    """A class name the label map does not have."""


class ModelConfigError(D2TritonError, ValueError):
    """A model's config.pbtxt lacks a parameter or holds one that cannot be read."""


class ServerEnvironmentError(D2TritonError, RuntimeError):
    """The Python environment or tritonserver cannot serve the models as they are."""


class ProcessExitedError(D2TritonError, RuntimeError):
    """A process d2-triton started (tritonserver, nginx, the gateway) exited unexpectedly."""


class UpstreamError(D2TritonError, RuntimeError):
    """A server d2-triton called (the REST gateway, a package index) answered with an error."""
