"""Every committed benchmark summary names the CPU class its figures were measured on.

Figures differ more between CPU classes than with anything this project tunes
(``benchmarks.machine``), so a summary without its class is a figure without its meaning.
Records made before the machine's flags were recorded say so ("not recorded").
"""

from __future__ import annotations

import json

import pytest

from d2_triton.cache import CHECKOUT

RESULTS = CHECKOUT / "benchmarks" / "results"
CLASSES = {"amx", "avx512", "avx2", "other", "not recorded"}


def named_classes(node) -> list[str]:
    """Every CPU class a summary names: ``cpu_class`` anywhere, or ``class`` in a machine
    record (beside the CPU or its flags)."""
    if isinstance(node, list):
        return [found for item in node for found in named_classes(item)]
    if not isinstance(node, dict):
        return []
    found = [node["cpu_class"]] if "cpu_class" in node else []
    if "class" in node and ({"cpu", "flags", "machine"} & node.keys() or len(node) == 1):
        found.append(node["class"])
    inner = [value for key, value in node.items() if key != "class"]
    return found + [found_inside for value in inner for found_inside in named_classes(value)]


SUMMARIES = sorted(RESULTS.rglob("summary.json"))


def test_there_are_summaries_to_check():
    assert len(SUMMARIES) >= 10


@pytest.mark.parametrize("path", SUMMARIES, ids=lambda path: str(path.parent.relative_to(RESULTS)))
def test_each_summary_names_its_cpu_class(path):
    classes = named_classes(json.loads(path.read_text()))
    assert classes, f"{path.relative_to(CHECKOUT)} names no CPU class"
    assert set(classes) <= CLASSES, set(classes) - CLASSES
