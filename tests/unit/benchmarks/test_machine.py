"""The one description of the machine: each CPU class these machines come in is named."""

from __future__ import annotations

import pytest

from benchmarks import machine

# The flags of the three classes CI runs on (from their /proc/cpuinfo), with a few others.
XEON_AMX = "fpu sse4_2 avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8"
EPYC_AVX512 = "fpu sse4_2 avx2 avx512f avx512_bf16 avx512_vnni"
EPYC_AVX2 = "fpu sse4_2 avx2 fma"


@pytest.mark.parametrize(
    ("flags", "expected", "listed"),
    [
        (XEON_AMX, "amx", 7),
        (EPYC_AVX512, "avx512", 4),
        (EPYC_AVX2, "avx2", 1),
        ("fpu sse4_2", "other", 0),
    ],
)
def test_each_cpu_class_is_named_from_its_flags(monkeypatch, flags, expected, listed):
    fields = {"flags": flags, "model name": "AMD EPYC 9R14"}
    monkeypatch.setattr(machine, "_cpuinfo_field", lambda name: fields.get(name, ""))
    record = machine.record()
    assert record["class"] == expected == machine.cpu_class()
    assert len(record["flags"]) == listed and set(record["flags"]) <= set(flags.split())
    assert record["cpu"] == "AMD EPYC 9R14" and record["cores"] >= 1
    assert "AMD EPYC 9R14" in machine.description()


def test_this_machine_is_described():
    """Whatever runs the suite has a model name, cores and AVX2 at least (x86-64 CI)."""
    record = machine.record()
    assert record["cpu"] and record["cores"] >= 1
    assert set(record["flags"]) <= set(machine.FLAGS)
