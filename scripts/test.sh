#!/usr/bin/env bash
# Set up (if needed) and run the default test suite against the real Triton server.
# Extra arguments go to pytest, e.g. ./scripts/test.sh -k parity -x
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export D2T_CACHE="${D2T_CACHE:-$ROOT/.cache}"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$D2T_CACHE/venv-dev/bin/python" -m pytest "$@"
