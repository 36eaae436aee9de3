"""A mounted repository that cannot be served is named for what is wrong, in one line."""

from __future__ import annotations

import json
import threading
import time

import pytest

from d2_triton.names import EXPORT_INFO_FILE, REPOSITORY_LAYOUT, PipelineNames
from d2_triton.server import cli
from d2_triton.server.repository import repository_problems


def write_pipeline(repository, name="default", versions=(1,), info=None):
    """The files the check looks at: four configs and the detector's version folders."""
    pipeline = PipelineNames(name)
    for model in pipeline.models().values():
        (repository / model).mkdir(parents=True, exist_ok=True)
        (repository / model / "config.pbtxt").write_text(f'name: "{model}"\n')
    for version in versions:
        folder = repository / pipeline.detector / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        if info is not False:
            details = {"repository_layout": REPOSITORY_LAYOUT, **(info or {})}
            (folder / EXPORT_INFO_FILE).write_text(json.dumps(details))
    return pipeline


def test_a_complete_repository_has_no_problem(tmp_path):
    write_pipeline(tmp_path)
    write_pipeline(tmp_path, "int8", versions=(1, 2))
    assert repository_problems(tmp_path) == []


def test_an_export_from_before_the_layout_field_is_layout_one(tmp_path):
    pipeline = write_pipeline(tmp_path)
    (tmp_path / pipeline.detector / "1" / EXPORT_INFO_FILE).write_text("{}")
    assert repository_problems(tmp_path) == []


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("missing", "does not exist"),
        ("empty", "holds no exported model"),
        ("no postprocess config", "incomplete (an export that did not finish?): postprocess"),
        ("no detector version", "has no detector version"),
        ("export died in version 1", "cannot read"),
        ("newer layout", "was exported in repository layout 2; this server reads layout 1"),
    ],
)
def test_each_kind_of_unservable_repository_is_named(tmp_path, damage, says):
    repository = tmp_path / "models"
    if damage != "missing":
        repository.mkdir()
    if damage in ("no postprocess config", "no detector version", "export died in version 1"):
        versions = () if damage == "no detector version" else (1,)
        write_pipeline(repository, versions=versions, info=False if "died" in damage else None)
        if damage == "no postprocess config":
            (repository / "postprocess" / "config.pbtxt").unlink()
    if damage == "newer layout":
        write_pipeline(repository, info={"repository_layout": 2})
    problems = repository_problems(repository)
    assert len(problems) == 1 and says in problems[0], problems


def test_the_launcher_waits_for_a_repository_and_tells_each_change_once(tmp_path, capsys):
    repository = tmp_path / "models"
    stopping, done = threading.Event(), []
    waited = threading.Thread(
        target=lambda: done.append(cli.wait_for_repository(repository, stopping))
    )
    cli.REPOSITORY_POLL_S, before = 0.01, cli.REPOSITORY_POLL_S
    try:
        waited.start()
        deadline = time.monotonic() + 30  # a hang catcher: it says so within a poll
        while "does not exist" not in capsys.readouterr().err:
            assert time.monotonic() < deadline, "the launcher never said what it waits for"
            time.sleep(0.01)
        repository.mkdir()
        write_pipeline(repository)  # the export job is done
        waited.join(timeout=30)
    finally:
        cli.REPOSITORY_POLL_S = before
        stopping.set()
    assert done == [True]
    assert "can be served now" in capsys.readouterr().err
    stopping_now = threading.Event()
    stopping_now.set()
    assert cli.wait_for_repository(tmp_path / "never", stopping_now) is False
