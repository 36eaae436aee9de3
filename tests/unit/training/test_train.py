"""``python -m training.train``: bad numbers and an unwritable folder end in one line."""

from __future__ import annotations

import pytest

from training.train import main


@pytest.mark.parametrize("argv", [["--max-iter", "0"], ["--base-lr", "-1"], ["--seed", "x"]])
def test_bad_arguments_are_one_line(capsys, tmp_path, argv):
    with pytest.raises(SystemExit) as exited:
        main(["--out", str(tmp_path / "model"), *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and argv[0] in err, err
