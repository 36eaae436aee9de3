"""d2_triton.commands: one line and a non-zero exit for bad input, a traceback for bugs."""

from __future__ import annotations

import pytest

from d2_triton.commands import Parser, command, positive_int
from d2_triton.errors import InvalidArgumentError


def test_a_usage_error_is_one_line(capsys):
    parser = Parser(prog="tool")
    parser.add_argument("--count", type=positive_int, required=True)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--count", "0"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tool: error: argument --count")


def test_project_errors_and_missing_files_end_in_one_line(capsys):
    @command("tool")
    def main(argv=None):
        raise InvalidArgumentError("a value\nthat spans lines")

    @command("tool")
    def reads(argv=None):
        open("/nonexistent/file")  # noqa: SIM115

    assert main([]) == 1
    assert capsys.readouterr().err == "tool: a value that spans lines\n"
    assert reads([]) == 1
    assert "No such file or directory" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback():
    @command("tool")
    def main(argv=None):
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        main([])
