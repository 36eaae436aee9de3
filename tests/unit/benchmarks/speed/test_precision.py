"""``benchmarks.speed.precision``'s comparison and report, on made-up run summaries.

The real run takes half an hour (three exports and sweeps); these check the arithmetic and
the report on figures whose ratios are known.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.speed import precision

SIZES = ("640x480", "1920x1080", "1280x960")  # not in order: the report sorts by width


def run_summary(img_per_s: float, p50_ms: float, rest_bytes: int) -> dict:
    """What ``benchmarks.speed.run`` writes, reduced to the fields the comparison reads."""
    eager = {"eager_img_per_s": 0.25, "eager_ms_per_image": 4000.0}
    return {
        "against_eager": {
            size: {
                **eager,
                "ensemble_img_per_s": img_per_s,
                "throughput_ratio": img_per_s / 0.25,
                "ensemble_p50_ms_alone": p50_ms,
                "latency_ratio": 4000.0 / p50_ms,
            }
            for size in SIZES
        },
        "memory": {"rest_total": rest_bytes},
        "components": {
            "sizes": {size: {"model": {"stages_ms": {"backbone": p50_ms / 2}}} for size in SIZES}
        },
    }


@pytest.fixture
def compared(monkeypatch):
    monkeypatch.setattr(precision, "runs_in", lambda name: name)
    return precision.compare(
        {
            "f32": run_summary(0.4, 2500.0, 2000 * 2**20),
            "int8": run_summary(1.2, 800.0, 1500 * 2**20),
        }
    )


def test_each_precision_is_compared_with_f32_and_memory_is_in_mib(compared):
    int8 = compared["int8"]
    assert int8["against_f32"]["640x480"]["throughput_ratio"] == pytest.approx(3.0)
    assert int8["against_f32"]["1920x1080"]["latency_ratio"] == pytest.approx(2500 / 800)
    assert compared["f32"]["against_f32"]["1280x960"]["throughput_ratio"] == pytest.approx(1.0)
    assert int8["memory_rest_mib"] == pytest.approx(1500)
    assert int8["detector_stages_ms"]["640x480"] == {"backbone": 400.0}


def test_the_report_lists_sizes_by_width_with_each_ratio(compared, tmp_path):
    summary = {
        "when": "today",
        "machine": "2 CPU cores (test)",
        "cpu_flags": {"avx512_vnni": True, "amx_int8": False},
        "command": "python -m benchmarks.speed.precision",
        "model": {"config": "mask_rcnn_R_50_FPN_3x.yaml"},
        "precisions": compared,
    }
    text = precision.report(summary)
    header = next(line for line in text.splitlines() if line.startswith("| precision (runs in)"))
    assert header.index("640x480") < header.index("1280x960") < header.index("1920x1080")
    assert "| int8 (int8) | 1.200 (**4.80**)" in text
    assert "800 (**5.00**)" in text and "| 1500 |" in text
    assert "avx512_vnni yes, amx_int8 no" in text
    precision.plot(summary, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_resume_keeps_only_a_summary_of_this_runs_export(tmp_path):
    summary = tmp_path / "int8" / "summary.json"
    summary.parent.mkdir()
    this_export, older_export = tmp_path / "export-new", tmp_path / "export-old"
    command = "python -m benchmarks.speed.run --repository {} --variant int8 --out x"
    summary.write_text(json.dumps({"command": command.format(older_export)}))
    assert precision.measured(summary, this_export) is None
    summary.write_text(json.dumps({"command": command.format(this_export)}))
    assert precision.measured(summary, this_export) == {"command": command.format(this_export)}
    assert precision.measured(tmp_path / "none.json", this_export) is None
    # a run that exported its own model names no repository: measured again, not a crash
    summary.write_text(json.dumps({"command": "python -m benchmarks.speed.run --variant f32"}))
    assert precision.measured(summary, this_export) is None
