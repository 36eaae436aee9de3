"""The one error type that means "the client sent something wrong"."""


class InvalidRequestError(ValueError):
    """A request the server refuses; its message is returned to the client as-is.

    The Triton models turn it into a per-request ``TritonError(INVALID_ARG)`` (HTTP 400),
    while any other exception is a server fault (HTTP 500) and is logged with its traceback.
    """
