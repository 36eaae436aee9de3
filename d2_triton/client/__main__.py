"""``python -m d2_triton.client``: see ``d2_triton.client.cli``."""

import sys

from d2_triton.client.cli import main

sys.exit(main())
