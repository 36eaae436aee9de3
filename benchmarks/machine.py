"""The machine a measurement ran on, as every benchmark summary records it.

Figures differ more between CPU classes than with anything this project tunes: the same
suite took 27-30 minutes on 2 AVX-512 cores and 52-79 on 2 AVX2-only ones, and what int8
and bf16 gain depends on VNNI, AVX512-BF16 or AMX.  So every summary names the CPU model,
its cores, the flags the numerics depend on and the class they make, all from this one
reading of ``/proc/cpuinfo``; a figure is never shown without them.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

# The CPU features this project's numerics depend on: AVX2 (every class), AVX-512, bf16 done
# natively (AVX512-BF16 or AMX), int8 dot products (AVX512-VNNI or AMX's int8 tiles).
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


@cache
def _cpuinfo_field(name: str) -> str:
    """The first ``name`` line's value in ``/proc/cpuinfo`` ('' where there is none)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name)), "")


def cpu_model() -> str:
    """The CPU's model name, e.g. ``AMD EPYC 9R14``."""
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_flags() -> dict[str, bool]:
    """Which of :data:`FLAGS` the CPU has."""
    listed = set(_cpuinfo_field("flags").split())
    return {flag: flag in listed for flag in FLAGS}


def listed_flags() -> list[str]:
    """The :data:`FLAGS` the CPU has, in their order."""
    return [flag for flag, present in cpu_flags().items() if present]


def class_of(flags: list[str]) -> str:
    """``amx``, ``avx512`` or ``avx2`` (``other`` below that) for a CPU with ``flags``."""
    if "amx_int8" in flags or "amx_bf16" in flags:
        return "amx"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "other"


def cpu_class() -> str:
    """This CPU's class (:func:`class_of`): the classes the docs compare."""
    return class_of(listed_flags())


def description() -> str:
    """One line: cores, CPU model, operating system."""
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} CPU cores ({cpu_model()}), {system}"


def record() -> dict:
    """The machine as a summary's ``machine`` entry: CPU, cores, flags and class."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "flags": listed_flags(),
        "class": cpu_class(),
    }
