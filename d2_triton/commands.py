"""What every command line of the project shares: bad input ends it in one line, no traceback.

``Parser`` is argparse's parser printing a usage error as one line (``prog: error: ...``,
exit 2); ``command`` wraps a ``main(argv) -> int`` so that an error the project raises on
purpose (``D2TritonError``) or a file that cannot be read (``OSError``) prints one line and
exits 1.  Anything else is a bug and keeps its traceback.  Standard library only.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from d2_triton.errors import D2TritonError

Main = Callable[[list[str] | None], int]


def one_line(error: BaseException) -> str:
    """An error's message on one line (YAML, JSON and HTTP errors often span several)."""
    return " ".join(str(error).split()) or type(error).__name__


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: ``prog: error: message``.

    Its description keeps its line breaks (a module's docstring, with its command lines).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """Exit 2 with one line (argparse prints the whole usage first)."""
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def command(prog: str, expected: tuple[type[BaseException], ...] = ()) -> Callable[[Main], Main]:
    """Decorate ``main``: ``D2TritonError``, ``OSError`` and ``expected`` end it with one line.

    The line reads ``prog: message`` on stderr and the exit status is 1.
    """
    caught = (D2TritonError, OSError, *expected)

    def decorate(main: Main) -> Main:
        @functools.wraps(main)
        def guarded(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except caught as error:
                print(f"{prog}: {one_line(error)}", file=sys.stderr)
                return 1

        return guarded

    return decorate
