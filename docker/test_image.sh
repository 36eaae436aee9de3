#!/usr/bin/env bash
# Build the images and run them as an operator would: the exporter's refusal and export, the
# model server on the mounted repository, two replicas behind the gateway rolling a version
# out and back under load (tests/integration/test_docker.py says what each step checks).
#
#   docker/test_image.sh            # ~15 minutes (torch is ~5.5 GB); needs a Docker engine
#
# Where no registry is reachable, the base image is built locally (docker/build_base_image.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
D2T_CACHE="${D2T_CACHE:-$ROOT/.cache}"
[ -x "$D2T_CACHE/venv-dev/bin/python" ] || { echo "run scripts/setup.sh first (the checks use its client)"; exit 1; }
cd "$ROOT"
exec "$D2T_CACHE/venv-dev/bin/python" -m pytest -m docker -p no:cacheprovider -s \
    tests/integration/test_docker.py "$@"
