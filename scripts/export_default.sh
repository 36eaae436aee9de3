#!/usr/bin/env bash
# Export the default model into the model repository unless it already holds one.
#
#   scripts/export_default.sh            # used by serve.sh and by the docker image
#
# TRT_MODEL_DIR     model repository (default: models/)
# D2T_CONFIG        Detectron2 config to export
#                   (default: COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml)
# D2T_WEIGHTS       zoo (default: the config's model-zoo checkpoint), a URL or a local file
# D2T_ALLOW_RANDOM_WEIGHTS=1 (default) exports a fixed-seed random init, with loud
#                   warnings, when the weights cannot be downloaded; set 0 to fail instead
# D2T_EXPORT_OPTIONS  further export_tools.export options, e.g. "--detector-threads 2"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
D2T_CACHE="${D2T_CACHE:-$ROOT/.cache}"
MODEL_DIR="${TRT_MODEL_DIR:-$ROOT/models}"

if [ -f "$MODEL_DIR/ensemble/config.pbtxt" ]; then
    echo "[export] $MODEL_DIR already holds an exported model; not exporting" >&2
    exit 0
fi
fallback=()
[ "${D2T_ALLOW_RANDOM_WEIGHTS:-1}" = 1 ] && fallback=(--fallback-random)
read -r -a extra <<< "${D2T_EXPORT_OPTIONS:-}"
cd "$ROOT"
exec "$D2T_CACHE/venv-dev/bin/python" -m export_tools.export \
    --config "${D2T_CONFIG:-COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml}" \
    --weights "${D2T_WEIGHTS:-zoo}" "${fallback[@]}" "${extra[@]}" --repository "$MODEL_DIR"
