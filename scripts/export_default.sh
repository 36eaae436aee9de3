#!/usr/bin/env bash
# Export the default model into the model repository unless it already holds one.
#
#   scripts/export_default.sh                # used by serve.sh, the exporter image, Kubernetes
#   scripts/export_default.sh --new-version  # the repository has the model: add its next
#                                            # detector version (same model, new weights)
#
# TRT_MODEL_DIR     model repository (default: models/)
# D2T_CONFIG        Detectron2 config to export
#                   (default: COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml)
# D2T_WEIGHTS       zoo (default: the config's model-zoo checkpoint), a URL or a local file
# D2T_PRECISION     f32 (default), bf16 or int8: what the OpenVINO stages compute in
# D2T_CALIBRATION   int8 only: a folder of ~100 images like those you will serve
# D2T_ALLOW_RANDOM_WEIGHTS=1 exports a fixed-seed random init, with loud warnings, when the
#                   weights cannot be downloaded; the default (0) fails instead, so no
#                   deployment serves a model nobody chose (./scripts/serve.sh, the local
#                   quick start, sets 1 unless told otherwise)
# D2T_EXPORT_OPTIONS  further export_tools.export options, e.g. "--detector-threads 2"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
D2T_CACHE="${D2T_CACHE:-$ROOT/.cache}"
MODEL_DIR="${TRT_MODEL_DIR:-$ROOT/models}"

case "${1:-}" in
    "") NEW_VERSION=0 ;;
    --new-version) NEW_VERSION=1 ;;
    *) echo "usage: $0 [--new-version]" >&2; exit 2 ;;
esac
if [ -f "$MODEL_DIR/ensemble/config.pbtxt" ] && [ "$NEW_VERSION" = 0 ]; then
    # Said whenever the caller asked for something: a silent skip served the old model.
    if [ -n "${D2T_CONFIG:-}${D2T_WEIGHTS:-}${D2T_PRECISION:-}" ]; then
        echo "[export] $MODEL_DIR already holds an exported model; keeping it, not exporting" \
            "D2T_CONFIG/D2T_WEIGHTS/D2T_PRECISION. To replace it, remove that folder (or set" \
            "TRT_MODEL_DIR to another); to add new weights as a new version of the same model," \
            "run this script with --new-version (docs/export.md)." >&2
    else
        echo "[export] $MODEL_DIR already holds an exported model; not exporting" >&2
    fi
    exit 0
fi
options=(--precision "${D2T_PRECISION:-f32}")
[ -n "${D2T_CALIBRATION:-}" ] && options+=(--calibration "$D2T_CALIBRATION")
[ "${D2T_ALLOW_RANDOM_WEIGHTS:-0}" = 1 ] && options+=(--fallback-random)
read -r -a extra <<< "${D2T_EXPORT_OPTIONS:-}"
cd "$ROOT"
status=0
"$D2T_CACHE/venv-dev/bin/python" -m export_tools.export \
    --config "${D2T_CONFIG:-COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml}" \
    --weights "${D2T_WEIGHTS:-zoo}" "${options[@]}" "${extra[@]}" --repository "$MODEL_DIR" \
    || status=$?
if [ $status -ne 0 ] && [ "${D2T_ALLOW_RANDOM_WEIGHTS:-0}" != 1 ]; then
    echo "[export] nothing exported. If the weights could not be had: give them" \
        "(D2T_WEIGHTS=/path/model_final.pkl), or set D2T_ALLOW_RANDOM_WEIGHTS=1 to export a" \
        "fixed-seed random model instead (for trying the plumbing: its detections mean nothing)" >&2
fi
exit $status
