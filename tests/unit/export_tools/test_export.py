"""``python -m export_tools.export``: bad input ends the export in one line, before any model.

Each case runs the real command line in-process with ``build_model`` replaced by a function
that fails the test, so passing shows the input was refused before the model was built (the
costly part: building, loading weights, tracing); the repository is never created.
"""

from __future__ import annotations

import json

import pytest

from export_tools import api, export

ZOO_CONFIG = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"
LAZY_CONFIG = "COCO-Detection/retinanet_R_50_FPN_1x.py"


@pytest.fixture(autouse=True)
def no_model_is_built(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built: the bad input was not refused first")

    monkeypatch.setattr(api, "build_model", refuse)


def write(path, text: str):
    path.write_text(text)
    return path


def cases(tmp):
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    good_json = write(tmp / "good.json", json.dumps(coco))
    empty_folder = tmp / "no-images-yet"
    empty_folder.mkdir(exist_ok=True)
    return {
        "label map not JSON": (["--label-map", str(write(tmp / "l.json", "{oops"))], "--label-map"),
        "label map keys not ids": (
            ["--label-map", str(write(tmp / "k.json", '{"cat": "dog"}'))],
            "integer ids",
        ),
        "weights path missing": (["--weights", str(tmp / "absent.pth")], "no such file"),
        "config file malformed": (
            ["--config", str(write(tmp / "bad.yaml", "MODEL: [unclosed\n"))],
            "--config",
        ),
        "config not in the zoo": (["--config", "COCO-Detection/nothing.yaml"], "--config"),
        "config unknown key": (
            ["--config", str(write(tmp / "key.yaml", "MODEL:\n  NO_SUCH_KEY: 1\n"))],
            "NO_SUCH_KEY",
        ),
        "config neither yaml nor LazyConfig": (
            ["--config", str(write(tmp / "model.json", "{}"))],
            "yaml, or LazyConfig .py",
        ),
        "LazyConfig not in the zoo": (["--config", "new_baselines/nothing.py"], "Model Zoo"),
        "LazyConfig file raises": (
            ["--config", str(write(tmp / "raises.py", "raise ValueError('no GPU here')\n"))],
            "no GPU here",
        ),
        "LazyConfig not a detector config": (
            ["--config", str(write(tmp / "other.py", "x = 1\n"))],
            "not a Detectron2 LazyConfig model",
        ),
        "LazyConfig override names no field": (
            ["--config", LAZY_CONFIG, "--", "model.roi_heads.box_predictor.test_score=0.5"],
            "the config has no model.roi_heads.box_predictor.test_score",
        ),
        "LazyConfig override not key=value": (
            ["--config", LAZY_CONFIG, "--", "model.roi_heads"],
            "key=value expected",
        ),
        "dataset json missing": (
            ["--coco-dataset", "d", str(tmp / "absent.json"), str(tmp)],
            "--coco-dataset d",
        ),
        "dataset json not COCO": (
            ["--coco-dataset", "d", str(write(tmp / "n.json", "[]")), str(tmp)],
            "not COCO",
        ),
        "dataset images missing": (
            ["--coco-dataset", "d", str(good_json), str(tmp / "no-images")],
            "no image folder",
        ),
        "bf16 with --exact": (["--exact", "--precision", "bf16"], "--precision bf16"),
        "int8 without calibration": (["--precision", "int8"], "--calibration DIR"),
        "int8 calibration folder missing": (
            ["--precision", "int8", "--calibration", str(tmp / "absent")],
            "no such folder",
        ),
        "int8 dataset without images": (
            ["--precision", "int8", "--coco-dataset", "d", str(good_json), str(empty_folder)],
            f"calibration folder {empty_folder}: no image files",
        ),
        "detector instances negative": (
            ["--detector-instances", "-1"],
            "--detector-instances -1: 1 or more expected",
        ),
        "no postprocess instance": (
            ["--postprocess-instances", "0"],
            "--postprocess-instances 0: 1 or more expected",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "label map not JSON",
        "label map keys not ids",
        "weights path missing",
        "config file malformed",
        "config not in the zoo",
        "config unknown key",
        "config neither yaml nor LazyConfig",
        "LazyConfig not in the zoo",
        "LazyConfig file raises",
        "LazyConfig not a detector config",
        "LazyConfig override names no field",
        "LazyConfig override not key=value",
        "dataset json missing",
        "dataset json not COCO",
        "dataset images missing",
        "bf16 with --exact",
        "int8 without calibration",
        "int8 calibration folder missing",
        "int8 dataset without images",
        "detector instances negative",
        "no postprocess instance",
    ],
)
def test_bad_input_ends_the_export_in_one_line(capsys, tmp_path, case):
    argv, says = cases(tmp_path)[case]
    repository = tmp_path / "repository"
    base = ["--config", ZOO_CONFIG, "--weights", "random", "--repository", str(repository)]
    assert export.main([*base, *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("export failed: ") and says in err[0], err
    assert not repository.exists()


def test_a_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        export.main(["--config", ZOO_CONFIG, "--device", "tpu"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
