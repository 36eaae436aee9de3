"""``benchmarks.zoo.run``'s rows: every zoo config listed, each classified, the table's counts.

The real run exports and serves every config (hours); these check what it decides before
exporting anything, from the configs Detectron2's installed sources ship.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.zoo.rows import DETECTOR, Row, classify, table, zoo_configs
from d2_triton.parity.detections import ParityFigures
from export_tools.detectron2_setup.shims import import_detectron2


@pytest.fixture(scope="module")
def configs() -> list[str]:
    import_detectron2()
    return zoo_configs()


def test_every_yaml_and_lazyconfig_file_is_listed_but_the_fragments(configs):
    assert len(configs) > 100
    assert "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml" in configs
    assert "new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py" in configs
    assert not [config for config in configs if config.startswith("common/")]


def test_each_config_gets_a_pipeline_name_of_its_own(configs):
    names = [Row(config, "yaml").name for config in configs]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("config", "kind", "says"),
    [
        ("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml", DETECTOR, None),
        ("COCO-Detection/fcos_R_50_FPN_1x.py", DETECTOR, None),
        ("Misc/cascade_mask_rcnn_R_50_FPN_3x.yaml", DETECTOR, None),
        ("Base-RCNN-FPN.yaml", "base config", "_BASE_"),
        ("COCO-Detection/rpn_R_50_FPN_1x.yaml", "proposal network", "not detections"),
        ("COCO-Detection/fast_rcnn_R_50_FPN_1x.yaml", "needs proposals", "PROPOSAL_FILES"),
        ("Misc/mask_rcnn_R_50_FPN_1x_dconv_c3-c5.yaml", DETECTOR, None),
        ("Misc/torchvision_imagenet_R_50.py", "classifier", "not a detector"),
        ("Misc/mmdet_mask_rcnn_R_50_FPN_1x.py", "mmdetection model", "mmdet"),
    ],
)
def test_a_config_is_classified_before_anything_is_exported(configs, config, kind, says):
    row = classify(config)
    assert row.kind == kind
    assert (row.reason is None) if says is None else (says in row.reason)


def test_the_table_counts_parity_among_detectors_only():
    served = Row("a.yaml", "yaml", mode="staged")
    served.record(ParityFigures(photos=2, instances=30))
    served.served_ms, served.eager_ms = 500.0, 1500.0
    differs = Row("b.yaml", "yaml", mode="exact")
    differs.record(ParityFigures(problems=["reference #0: box off"]))
    refused = Row("c.yaml", "yaml", reason="needs Detectron2's C++ ops")
    other = Row("Base-X.yaml", "yaml", kind="base config", reason="a base")
    empty = Row("d.yaml", "yaml", mode="staged")
    empty.record(ParityFigures(photos=2, instances=0))
    assert empty.outcome == "nothing compared"  # no instances: no proof of parity
    text = table([served, differs, refused, other])
    assert text.startswith("4 configs; 3 detectors, of which 1 serve with parity (33 %)")
    assert "1 differ, 1 are not served" in text and "1 are not detectors" in text
    assert "| 3.00x |" in text and "reference #0: box off" in text


def test_a_run_of_some_configs_replaces_their_rows_and_keeps_the_others(configs, tmp_path):
    from benchmarks.zoo.summary import ZooSummary

    first, second = configs[:2]
    ZooSummary(tmp_path, "zoo").record([Row(first, "yaml", reason="old")])
    ZooSummary(tmp_path, "zoo").record([Row(second, "yaml", reason="kept")])  # resumed
    ZooSummary(tmp_path, f"zoo --only {first}").record([Row(first, "yaml", reason="new")])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(row["config"], row["reason"], row["run"]) for row in summary["rows"]] == [
        (first, "new", 2),
        (second, "kept", 1),
    ]
    assert summary["runs"][2]["command"].endswith(f"--only {first}")
    assert summary["counts"]["rows"] == 2


@pytest.mark.parametrize(
    ("first_failure", "exported_again", "mode", "reason"),
    [
        ("stages: eager instance 30 (score 0.0297) has no counterpart", True, "exact", None),
        ("unknown model-zoo config", False, "", "unknown model-zoo config"),
    ],
)
def test_a_refused_staged_export_is_exported_exact_and_says_so(
    monkeypatch, tmp_path, first_failure, exported_again, mode, reason
):
    """Only the exporter's own stage check ("stages: ...") leads to an ``--exact`` export."""
    from benchmarks.zoo import run as zoo
    from export_tools.repository import writer

    calls = []

    def run_export(row, repository, *options):
        calls.append(options)
        return None if options == ("--exact",) else first_failure

    monkeypatch.setattr(zoo, "_run_export", run_export)
    info = {"detector_mode": "exact", "meta_architecture": "GeneralizedRCNN"}
    monkeypatch.setattr(writer, "read_export_info", lambda repository, names: info)
    row = Row("LVISv1-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml", "yaml")
    zoo.export(row, tmp_path)
    assert calls == ([(), ("--exact",)] if exported_again else [()])
    assert (row.mode, row.reason) == (mode, reason)
    assert row.staged_refused == (first_failure if exported_again else None)
    if exported_again:
        row.record(ParityFigures(photos=2, instances=3))
        assert f"staged export refused ({first_failure}), exported `--exact`" in table([row])
