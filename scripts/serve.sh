#!/usr/bin/env bash
# Set up (if needed), export the default model if the repository has none, start Triton.
#
#   ./scripts/serve.sh                         # HTTP :8000, gRPC :8001, metrics :8002
#
# TRT_MODEL_DIR     model repository to serve (default: models/)
# D2T_CONFIG        Detectron2 config exported when the repository is empty
#                   (default: COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml)
# D2T_WEIGHTS       zoo (default: the config's model-zoo checkpoint), a URL or a local file
# D2T_ALLOW_RANDOM_WEIGHTS=1 (default) exports a fixed-seed random init, with loud
#                   warnings, when the weights cannot be downloaded; set 0 to fail instead
# HTTP_PORT, GRPC_PORT, METRICS_PORT   ports (default 8000, 8001, 8002)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export D2T_CACHE="${D2T_CACHE:-$ROOT/.cache}"
"$ROOT/scripts/setup.sh"

MODEL_DIR="${TRT_MODEL_DIR:-$ROOT/models}"
if [ ! -f "$MODEL_DIR/ensemble/config.pbtxt" ]; then
    fallback=()
    [ "${D2T_ALLOW_RANDOM_WEIGHTS:-1}" = 1 ] && fallback=(--fallback-random)
    (cd "$ROOT" && "$D2T_CACHE/venv-dev/bin/python" -m export_tools.export \
        --config "${D2T_CONFIG:-COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml}" \
        --weights "${D2T_WEIGHTS:-zoo}" "${fallback[@]}" --repository "$MODEL_DIR")
fi
cd "$ROOT"
exec "$D2T_CACHE/venv/bin/python" -m d2_triton.server --model-repository "$MODEL_DIR" \
    --http-port "${HTTP_PORT:-8000}" --grpc-port "${GRPC_PORT:-8001}" \
    --metrics-port "${METRICS_PORT:-8002}"
