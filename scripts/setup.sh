#!/usr/bin/env bash
# Set up everything d2-triton needs, idempotently; a second run takes seconds.
#
#   scripts/setup.sh                 server + export + test environments (development, CI)
#   scripts/setup.sh --export-only   server + export environments (the exporter image)
#   scripts/setup.sh --server-only   the server environment alone (the model-server image)
#
# System packages (Debian's, installed when missing and we are root): Python 3.11 with venv
# and libpython, nginx with its JavaScript module (the front before tritonserver), and for
# the tests and benchmarks libb64 (perf_analyzer), curl, and chromium with its driver (the
# page's browser tests).
#
#   .cache/venv       server environment (requirements.txt): what Triton's Python-backend
#                     stubs import (torch, numpy<2, opencv, ...), tritonserver itself and
#                     the clients (requirements-client.txt)
#   .cache/venv-dev   export environment (requirements-export.txt + Detectron2) and, unless
#                     --export-only, the test tools (requirements-dev.txt); layered on the
#                     server environment with a .pth file so torch is installed once
#   .cache/pip        pip's download cache (torch's CUDA wheels are ~5.5 GB)
#
# D2T_CACHE moves .cache elsewhere (e.g. a CI cache volume).  Requires Python 3.11 with venv
# and the shared libpython3.11 (the stub embeds it); on Debian/Ubuntu they are installed
# here when missing and we are root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export D2T_CACHE="${D2T_CACHE:-$ROOT/.cache}"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$D2T_CACHE/pip}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
SERVER_ENV="$D2T_CACHE/venv"
DEV_ENV="$D2T_CACHE/venv-dev"
DEV_REQUIREMENTS="$ROOT/requirements-dev.txt"
MODE=all  # all: development and CI; export, server: the docker images
case "${1:-}" in
    "") ;;
    --export-only) DEV_REQUIREMENTS="$ROOT/requirements-export.txt"; MODE=export ;;
    --server-only) MODE=server ;;
    *) echo "usage: $0 [--export-only | --server-only]" >&2; exit 2 ;;
esac

log() { printf '[setup] %s\n' "$*" >&2; }

# Not grep -q: it would stop reading early and, under pipefail, fail on ldconfig's SIGPIPE.
have_library() { ldconfig -p 2>/dev/null | grep "$1" >/dev/null; }

ensure_system_packages() {
    local missing=()
    [ -x /usr/bin/python3.11 ] || command -v python3.11 >/dev/null || missing+=(python3.11)
    have_library 'libpython3\.11\.so\.1\.0' || missing+=(libpython3.11)
    # perf_analyzer (benchmarks) links libb64; Debian ships it as libb64-0d.
    [ "$MODE" != all ] || have_library 'libb64\.so\.0d' || missing+=(libb64-0d)
    # The front before tritonserver (d2_triton/server/front.py): nginx and its JavaScript
    # module (front.js checks inference requests); the tests also use curl.
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    [ -f /usr/lib/nginx/modules/ngx_http_js_module.so ] || missing+=(libnginx-mod-http-js)
    [ "$MODE" != all ] || command -v curl >/dev/null || missing+=(curl)
    # The page's tests drive Debian's chromium through its chromedriver (Selenium).
    [ "$MODE" != all ] || [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ "$MODE" != all ] || [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
    python_for_venv -c 'import ensurepip' 2>/dev/null || missing+=(python3.11-venv)
    [ ${#missing[@]} -eq 0 ] && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing Debian packages: ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        log "missing system packages: ${missing[*]} (install them, e.g. with apt-get)"; exit 1
    fi
}

# Debian's python3.11 is the interpreter whose libpython the Triton stub embeds; prefer it.
python_for_venv() {
    if [ -x /usr/bin/python3.11 ]; then /usr/bin/python3.11 "$@"; else python3.11 "$@"; fi
}

new_venv() {
    python_for_venv -m venv "$1"
    "$1/bin/pip" install -q --upgrade "pip>=24" wheel
}

# Skip pip when the requirement files are unchanged since the last successful install.
# --no-compile: pip would byte-compile every file of torch and friends, most never imported;
# Python compiles what it imports on first import instead (the Docker image compiles all,
# since its user cannot write there).
fingerprint() { cat "$@" | sha256sum | cut -d' ' -f1; }

site_packages() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

make_server_env() {
    local stamp="$SERVER_ENV/.d2t-requirements" want
    want="$(fingerprint "$ROOT/requirements.txt" "$ROOT/requirements-client.txt")"
    [ -x "$SERVER_ENV/bin/python" ] || new_venv "$SERVER_ENV"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing server requirements into $SERVER_ENV (first time: torch, ~5.5 GB)"
        "$SERVER_ENV/bin/pip" install -q --no-compile -r "$ROOT/requirements.txt"
        # Earlier versions installed the checkout editable; the .pth below replaces that.
        "$SERVER_ENV/bin/pip" uninstall -q -y d2-triton 2>/dev/null || true
        echo "$want" > "$stamp"
    fi
    # The stubs import d2_triton from this checkout: a path entry, like an editable install
    # but without building anything, so it needs no more than the requirement files (the
    # docker image installs the environments before it copies the code).
    echo "$ROOT" > "$(site_packages "$SERVER_ENV")/d2-triton-checkout.pth"
}

make_dev_env() {
    local stamp="$DEV_ENV/.d2t-requirements" want
    want="$(fingerprint "$DEV_REQUIREMENTS" "$ROOT/requirements-export.txt" \
        "$ROOT/export_tools/detectron2_setup/detectron2-source.txt")"
    [ -x "$DEV_ENV/bin/python" ] || new_venv "$DEV_ENV"
    site_packages "$SERVER_ENV" > "$(site_packages "$DEV_ENV")/d2t-server-environment.pth"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing $(basename "$DEV_REQUIREMENTS") into $DEV_ENV"
        "$DEV_ENV/bin/pip" install -q --no-compile -r "$DEV_REQUIREMENTS"
        (cd "$ROOT" && "$DEV_ENV/bin/python" -m export_tools.detectron2_setup.install)
        echo "$want" > "$stamp"
    fi
}

ensure_system_packages
make_server_env
[ "$MODE" = server ] || make_dev_env
"$SERVER_ENV/bin/python" - <<'EOF'
import numpy
assert int(numpy.__version__.split(".")[0]) < 2, f"server env has numpy {numpy.__version__}"
EOF
if [ "$MODE" = server ]; then log "ready: server env $SERVER_ENV";
else log "ready: server env $SERVER_ENV, export/test env $DEV_ENV"; fi
