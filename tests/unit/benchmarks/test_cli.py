"""The benchmark commands: a missing results folder or a bad option ends in one line."""

from __future__ import annotations

import pytest

from benchmarks.load import soak_sensitivity
from benchmarks.speed import report


def test_a_missing_results_folder_is_one_line(capsys, tmp_path):
    assert report.main([str(tmp_path / "absent")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "summary.json" in err, err


def test_a_bad_option_is_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exited:
        soak_sensitivity.main(["--soak", str(tmp_path), "--length", "long", "--out", "x"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--length" in err, err
