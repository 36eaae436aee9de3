#!/usr/bin/env bash
# Set up (if needed), lint, and run the default test suite against the real Triton server.
# Extra arguments go to pytest, e.g. ./scripts/test.sh -k parity -x
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export D2T_CACHE="${D2T_CACHE:-$ROOT/.cache}"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
# Lint, format and the complexity rule (pyproject.toml) fail the run before any test does.
"$D2T_CACHE/venv-dev/bin/ruff" check .
"$D2T_CACHE/venv-dev/bin/ruff" format --check .
exec "$D2T_CACHE/venv-dev/bin/python" -m pytest "$@"
