"""The launcher's command line: a repository without a model, a bad number: one line."""

from __future__ import annotations

import pytest

from d2_triton.server.cli import main


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--model-repository", "{tmp}"], "has no exported model"),
        (["--model-repository", "{tmp}", "--max-in-flight", "0"], "--max-in-flight"),
        (["--http-port", "eighty"], "--http-port"),
    ],
)
def test_bad_arguments_end_in_one_line(capsys, tmp_path, argv, says):
    with pytest.raises(SystemExit) as exited:
        main([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
