"""The soak's memory statistics: a steady leak reads as growth, one plateau step does not."""

from __future__ import annotations

import pytest

from benchmarks.load.soak import floor_growth, floors

MIB = 1024 * 1024


def test_a_steady_leak_is_growth():
    points = [(25.0 + 10 * i, 1600 + 3.5 * i) for i in range(6)]  # 21 MiB/min
    first, last, growth = floor_growth(points)
    assert growth == pytest.approx(21.0)
    assert last > first


def test_one_plateau_step_is_not_growth():
    """A 75 s soak in CI read these floors (MiB): one step up of 28 MiB, then flat."""
    points = [
        (25.1, 1578.2),
        (34.6, 1571.2),
        (44.7, 1599.4),
        (54.7, 1599.4),
        (64.8, 1611.7),
        (74.8, 1599.5),
    ]
    first, last, growth = floor_growth(points)
    assert abs(growth) < 16
    assert (first, last) == (1571.2, 1599.5)  # the total rise is still bounded by the caller


def test_flat_memory_is_flat_and_too_few_windows_are_refused():
    assert floor_growth([(t, 1500.0) for t in range(0, 60, 10)])[2] == 0
    with pytest.raises(ValueError, match="three windows"):
        floor_growth([(0, 1.0), (10, 1.0)])


def test_floors_follow_the_lowest_sample_of_full_windows():
    samples = [(t / 2, (1000 + (50 if t % 4 == 0 else 0)) * MIB) for t in range(60)]
    samples.append((30.2, 10 * MIB))  # a lone sample in a window cut short: not a floor
    result = floors(samples, window_s=10.0)
    assert [value for _, value in result] == [1000.0, 1000.0, 1000.0]
