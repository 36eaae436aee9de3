"""A cache entry asked for by two processes at once is made by one (d2_triton.testing.building)."""

from __future__ import annotations

import subprocess
import sys
import time

from d2_triton.cache import CHECKOUT
from d2_triton.testing.building import building

# The other process: waits for the entry's lock, then says whether the entry is there.
ASKS = (
    "import sys; from pathlib import Path; from d2_triton.testing.building import building\n"
    "entry = Path(sys.argv[1])\n"
    "print('asking', flush=True)\n"
    "with building(entry):\n"
    "    print('made' if entry.is_file() else 'missing', flush=True)\n"
)


def test_a_second_process_waits_for_the_first_and_finds_the_entry_made(tmp_path):
    entry = tmp_path / "exports" / "entry"
    with building(entry):  # makes the folder for its lock
        other = subprocess.Popen(
            [sys.executable, "-c", ASKS, str(entry)],
            cwd=CHECKOUT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert other.stdout.readline().strip() == "asking"
        time.sleep(0.5)  # it is at the lock, or past it had the lock not held it
        assert other.poll() is None, "the second process did not wait for the lock"
        entry.write_text("made")
    out, _ = other.communicate(timeout=60)
    assert out.strip() == "made"  # not "missing": it looked only once the first was done
    with building(entry):  # released by the process that held it: not held for ever
        assert entry.read_text() == "made"
