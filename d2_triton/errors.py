"""The exceptions d2-triton raises, in one hierarchy.

``D2TritonError`` is the root: catch it to catch anything this project raises on purpose.
``InvalidRequestError`` is the one that means "the client sent something wrong".
"""


class D2TritonError(Exception):
    """Base of every error d2-triton raises on purpose."""


class InvalidRequestError(D2TritonError, ValueError):
    """A request the server refuses; its message is returned to the client as-is.

    The Triton models turn it into a per-request ``TritonError(INVALID_ARG)`` (HTTP 400),
    while any other exception is a server fault (HTTP 500) and is logged with its traceback.
    """


class ModelConfigError(D2TritonError, ValueError):
    """A model's config.pbtxt lacks a parameter or holds one that cannot be read."""


class ServerEnvironmentError(D2TritonError, RuntimeError):
    """The Python environment or tritonserver cannot serve the models as they are."""
