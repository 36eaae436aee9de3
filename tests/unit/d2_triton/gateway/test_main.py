"""``python -m d2_triton.gateway``: a bad setting in the environment ends it in one line."""

from __future__ import annotations

from d2_triton.gateway.__main__ import main


def test_a_bad_setting_is_one_line_naming_the_variable(capsys, monkeypatch):
    monkeypatch.setenv("PORT", "not-a-port")
    assert main() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PORT" in err, err
