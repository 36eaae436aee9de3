"""The C allocator's policy in the detector's process: freed memory is kept for reuse.

glibc's ``malloc`` serves every block over 32 MiB (and, until its threshold adapts, smaller
ones) with a fresh ``mmap`` and returns it with ``munmap`` when freed.  torch allocates its
tensors with ``malloc``, so each call of a detector's glue maps new memory for its largest
temporaries (the box head's pooled input alone is 1000 x 256 x 7 x 7 floats, 50 MB) and
the kernel zeroes every page of it again on first touch: 14 ms for a ``torch.zeros`` of that
size here, against 1 ms once the memory is reused, a quarter of the int8 detector's
``proposals`` stage (benchmarks/README.md).  With ``mmap`` off for blocks and the heap's top
trimmed only past 1 GiB, the same memory serves every request; the process keeps its
largest request's working set (it is measured, with the server's memory, by
``benchmarks.speed.run``).  Where the heap cannot grow, glibc still maps memory for it
whatever ``M_MMAP_MAX`` says, so no allocation fails for the policy.  Set per process with
``mallopt``: nothing else changes, and on a C library other than glibc (no ``mallopt``) it
does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt's parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Free memory at the top of the heap past this goes back to the system.
KEPT_FREE_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Have this process's ``malloc`` reuse freed blocks instead of mapping new ones.

    Returns whether it took effect (``False`` without glibc's ``mallopt``).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES))
