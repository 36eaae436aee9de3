"""The client's command line: a missing file, an unreachable server, a bad option: one line."""

from __future__ import annotations

import pytest

from d2_triton.client.cli import main
from d2_triton.testing.ports import free_ports


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_missing_image_file(capsys, tmp_path):
    assert main(["infer", str(tmp_path / "absent.jpg")]) == 1
    assert "absent.jpg" in one_line_error(capsys)


def test_a_server_that_does_not_answer(capsys, tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8\xff not really")
    assert main(["infer", str(image), "--url", f"127.0.0.1:{free_ports(1)[0]}"]) == 1
    assert one_line_error(capsys).startswith("python -m d2_triton.client: ")


@pytest.mark.parametrize(
    "argv", [["infer", "x.jpg", "--model", "Bad Name"], ["infer", "x.jpg", "--mask-format", "x"]]
)
def test_a_bad_option_is_a_usage_error(capsys, argv):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "error:" in one_line_error(capsys)
