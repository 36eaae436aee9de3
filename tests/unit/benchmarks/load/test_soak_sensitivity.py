"""The soak-check replay: flat memory never rises, a leak's rise scales with it."""

from __future__ import annotations

import json

import pytest

from benchmarks.load.soak_sensitivity import main, read_totals, window_rises

MIB = 1024 * 1024


def sawtooth(seconds: int, leak_mib_per_s: float = 0.0) -> list[tuple[float, float]]:
    """A floor of 2000 MiB (plus the leak) with a 300 MiB request spike every third second."""
    return [
        (float(t), (2000 + leak_mib_per_s * t + (300 if t % 3 else 0)) * MIB)
        for t in range(seconds)
    ]


def test_flat_memory_rises_by_nothing_in_every_window():
    rises = window_rises(sawtooth(400), length_s=240, leak_mib_per_s=0.0)
    assert len(rises) == 33 and set(rises) == {0.0}


def test_a_leak_rises_by_its_rate_times_the_span_between_thirds():
    """Warm-up 60 s, then thirds of 60 s: their lowest floors lie ~120 s apart."""
    rises = window_rises(sawtooth(400), length_s=240, leak_mib_per_s=0.5)
    assert all(rise == pytest.approx(60.0, abs=5.0) for rise in rises), rises
    doubled = window_rises(sawtooth(400), length_s=240, leak_mib_per_s=1.0)
    assert doubled == pytest.approx([2 * rise for rise in rises])


def test_totals_are_read_from_the_soak_csv(tmp_path):
    path = tmp_path / "memory.csv"
    path.write_text("seconds,stub:detector,tritonserver,total\n0.0,10,5,15\n1.0,12,5,17\n")
    assert read_totals(path) == [(0.0, 15.0), (1.0, 17.0)]


def test_a_recorded_leak_fails_the_check_in_every_window(tmp_path):
    """The whole command on two made-up soaks: one flat, one that leaked 0.5 MiB/s."""
    for name, leak in (("flat", 0.0), ("leaky", 0.5)):
        folder = tmp_path / name
        folder.mkdir()
        rows = [f"{t:.1f},{rss:.0f}" for t, rss in sawtooth(300, leak)]
        (folder / "memory.csv").write_text("seconds,total\n" + "\n".join(rows) + "\n")
        load = {"good_ok": 300, "requests": 600}
        (folder / "soak.json").write_text(json.dumps({"load": load, "seconds_of_load": 300.0}))
    out = tmp_path / "out"
    main(
        [
            "--soak",
            str(tmp_path / "flat"),
            str(tmp_path / "leaky"),
            "--out",
            str(out),
            "--limit",
            "50",
            "--length",
            "240",  # 13 windows of each 300 s soak, 5 s apart
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    no_leak_added = summary["leaks"][0]
    assert summary["soaks"] == ["flat", "leaky"] and no_leak_added["windows"] == 26
    # The leaky soak's 13 windows rise by ~60 MiB: over the limit; the flat one's do not.
    assert no_leak_added["windows_failing_the_check"] == 13
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 0 | 13 of 26 |" in (out / "report.md").read_text()
