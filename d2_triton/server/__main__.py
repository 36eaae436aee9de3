"""``python -m d2_triton.server``: see ``d2_triton.server.cli``."""

import sys

from d2_triton.server.cli import main

sys.exit(main())
