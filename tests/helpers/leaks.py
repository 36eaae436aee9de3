"""What no answer may name: a Python-backend shared-memory region or a file path.

The public chain against Triton 2.51 (CVE-2025-23319/23320/23334) starts with an error
message naming a region; paths tell an attacker the layout of the machine.
"""

from __future__ import annotations

import re

LEAK = re.compile(r"triton_python_backend_shm|/dev/shm|(?<![\w.:/])/(?:[\w.-]+/)+[\w.-]+")
