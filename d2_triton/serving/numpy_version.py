"""The one numpy check: Triton 2.51's Python-backend stub needs numpy < 2."""

from __future__ import annotations

from d2_triton.errors import ServerEnvironmentError


def check_numpy_version(version: str, where: str = "the Python-backend environment") -> None:
    """Refuse numpy >= 2 in ``where`` (ServerEnvironmentError).

    Triton 2.51's Python-backend stub (the one nvidia-pytriton 0.7.0 ships) is built against
    numpy 1.x; with numpy 2 in its environment it returns *empty* output tensors and logs
    nothing.  Failing the model load or the server start says what is wrong instead.
    """
    major = int(version.split(".")[0])
    if major >= 2:
        raise ServerEnvironmentError(
            f"numpy {version} is installed in {where}: Triton 2.51's Python backend stub "
            "returns empty output tensors under numpy 2, silently. Install numpy<2 (the "
            "project's requirements.txt pins it)."
        )
