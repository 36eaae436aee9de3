#!/usr/bin/env bash
# Set up (if needed), export the default model if the repository has none, start Triton.
#
#   ./scripts/serve.sh                         # HTTP :8000, gRPC :8001, metrics :8002
#   ./scripts/serve.sh --gateway               # and the REST gateway with its page on :8080
#
# Clients reach the front (nginx) on those ports; tritonserver listens on loopback only.  The
# admin key of Triton's restricted APIs (statistics, logging, trace, shared memory, model
# repository) is new at each start and written to $D2T_ADMIN_KEY_FILE (mode 0600); set
# D2T_ADMIN_KEY to fix it instead (docs/security.md).
#
# Needs root on a fresh machine (scripts/setup.sh installs Debian's python3.11, nginx and its
# JavaScript module, libb64, curl and chromium with apt).
#
# TRT_MODEL_DIR     model repository to serve (default: models/)
# D2T_CONFIG, D2T_WEIGHTS, D2T_PRECISION, D2T_CALIBRATION, D2T_EXPORT_OPTIONS
#                   what to export when the repository is empty (scripts/export_default.sh)
# D2T_ALLOW_RANDOM_WEIGHTS   1 here (unlike the containers): a machine that cannot download
#                   the weights still gets a server, of a fixed-seed random model, said loudly
#                   (export output, the server log, /v1/models); 0 fails instead
# HTTP_PORT, GRPC_PORT, METRICS_PORT   ports (default 8000, 8001, 8002)
# D2T_ADMIN_KEY_FILE   where the admin key is written (default $D2T_CACHE/admin-key)
# GATEWAY_PORT      the gateway's port with --gateway (default 8080; develop mode: its API
#                   docs at /docs and its page at /, the admin key read from the file above)
# D2T_SKIP_SETUP=1  the environments exist already
set -euo pipefail
GATEWAY=0
if [ "${1:-}" = --gateway ]; then GATEWAY=1; shift; fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export D2T_CACHE="${D2T_CACHE:-$ROOT/.cache}"
export TRT_MODEL_DIR="${TRT_MODEL_DIR:-$ROOT/models}"
D2T_ADMIN_KEY_FILE="${D2T_ADMIN_KEY_FILE:-$D2T_CACHE/admin-key}"
[ "${D2T_SKIP_SETUP:-0}" = 1 ] || "$ROOT/scripts/setup.sh"
D2T_ALLOW_RANDOM_WEIGHTS="${D2T_ALLOW_RANDOM_WEIGHTS:-1}" "$ROOT/scripts/export_default.sh"
cd "$ROOT"
# The launcher reads HTTP_PORT, GRPC_PORT and METRICS_PORT itself.
server=("$D2T_CACHE/venv/bin/python" -m d2_triton.server --model-repository "$TRT_MODEL_DIR"
        --admin-key-file "$D2T_ADMIN_KEY_FILE" "$@")
[ "$GATEWAY" = 1 ] || exec "${server[@]}"
# The gateway beside it: it waits for Triton on its own; both stop together.
TRITON_HOST=127.0.0.1 TRITON_PORT="${HTTP_PORT:-8000}" TRITON_ADMIN_KEY_FILE="$D2T_ADMIN_KEY_FILE" \
    PORT="${GATEWAY_PORT:-8080}" mode=develop "$D2T_CACHE/venv/bin/python" -m d2_triton.gateway &
gateway=$!
"${server[@]}" &
launcher=$!
trap 'kill -TERM "$launcher" "$gateway" 2>/dev/null || true' INT TERM
status=0
while kill -0 "$launcher" 2>/dev/null; do wait "$launcher" || status=$?; done
kill -TERM "$gateway" 2>/dev/null || true
wait "$gateway" 2>/dev/null || true
exit "$status"
