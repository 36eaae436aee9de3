#!/usr/bin/env bash
# Set up (if needed), export the default model if the repository has none, start Triton.
#
#   ./scripts/serve.sh                         # HTTP :8000, gRPC :8001, metrics :8002
#
# Clients reach the front (nginx) on those ports; tritonserver listens on loopback only.  The
# admin key of Triton's restricted APIs (statistics, logging, trace, shared memory, model
# repository) is new at each start and written to $D2T_ADMIN_KEY_FILE (mode 0600); set
# D2T_ADMIN_KEY to fix it instead (docs/security.md).
#
# TRT_MODEL_DIR     model repository to serve (default: models/)
# D2T_CONFIG, D2T_WEIGHTS, D2T_ALLOW_RANDOM_WEIGHTS, D2T_EXPORT_OPTIONS
#                   what to export when the repository is empty (scripts/export_default.sh)
# HTTP_PORT, GRPC_PORT, METRICS_PORT   ports (default 8000, 8001, 8002)
# D2T_ADMIN_KEY_FILE   where the admin key is written (default $D2T_CACHE/admin-key)
# D2T_SKIP_SETUP=1  the environments exist already (the docker image sets it)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export D2T_CACHE="${D2T_CACHE:-$ROOT/.cache}"
export TRT_MODEL_DIR="${TRT_MODEL_DIR:-$ROOT/models}"
D2T_ADMIN_KEY_FILE="${D2T_ADMIN_KEY_FILE:-$D2T_CACHE/admin-key}"
[ "${D2T_SKIP_SETUP:-0}" = 1 ] || "$ROOT/scripts/setup.sh"
"$ROOT/scripts/export_default.sh"
cd "$ROOT"
# The launcher reads HTTP_PORT, GRPC_PORT and METRICS_PORT itself.
exec "$D2T_CACHE/venv/bin/python" -m d2_triton.server --model-repository "$TRT_MODEL_DIR" \
    --admin-key-file "$D2T_ADMIN_KEY_FILE" "$@"
