"""The detector's allocator policy: large blocks come from (and go back to) the heap."""

import subprocess
import sys

from d2_triton.cache import CHECKOUT

# Run in a child: the policy is process-wide, and the test process keeps glibc's defaults.
PROBE = """
import ctypes, sys
from d2_triton.serving import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
took = allocator.keep_freed_memory() if sys.argv[1] == "on" else None
mapped_before = libc.mallinfo2().hblks
block = libc.malloc(64 << 20)
mapped = libc.mallinfo2().hblks - mapped_before
libc.free(block)
print(took, mapped, libc.mallinfo2().fordblks >= 64 << 20)
"""


def probe(policy: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, policy],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.split()


def test_glibc_maps_a_large_block_and_returns_it_by_default():
    assert probe("off") == ["None", "1", "False"]


def test_with_the_policy_a_large_block_is_heap_memory_kept_after_free():
    assert probe("on") == ["True", "0", "True"]
