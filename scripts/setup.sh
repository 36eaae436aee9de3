#!/usr/bin/env bash
# Set up everything d2-triton needs, idempotently; a second run takes seconds.
#
#   .cache/venv       server environment (requirements.txt): what Triton's Python-backend
#                     stubs import (torch, numpy<2, opencv, ...) plus tritonserver itself
#   .cache/venv-dev   export + test environment (requirements-dev.txt + Detectron2), layered
#                     on the server environment with a .pth file so torch is installed once
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

log() { printf '[setup] %s\n' "$*" >&2; }

# Not grep -q: it would stop reading early and, under pipefail, fail on ldconfig's SIGPIPE.
have_library() { ldconfig -p 2>/dev/null | grep "$1" >/dev/null; }

ensure_system_packages() {
    local missing=()
    [ -x /usr/bin/python3.11 ] || command -v python3.11 >/dev/null || missing+=(python3.11)
    have_library 'libpython3\.11\.so\.1\.0' || missing+=(libpython3.11)
    # perf_analyzer (benchmarks) links libb64; Debian ships it as libb64-0d.
    have_library 'libb64\.so\.0d' || missing+=(libb64-0d)
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
fingerprint() { cat "$@" | sha256sum | cut -d' ' -f1; }

make_server_env() {
    local stamp="$SERVER_ENV/.d2t-requirements" want
    want="$(fingerprint "$ROOT/requirements.txt" "$ROOT/pyproject.toml")"
    [ -x "$SERVER_ENV/bin/python" ] || new_venv "$SERVER_ENV"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing server requirements into $SERVER_ENV (first time: torch, ~5.5 GB)"
        "$SERVER_ENV/bin/pip" install -q -r "$ROOT/requirements.txt"
        "$SERVER_ENV/bin/pip" install -q --no-deps -e "$ROOT"
        echo "$want" > "$stamp"
    fi
}

make_dev_env() {
    local stamp="$DEV_ENV/.d2t-requirements" want site server_site
    want="$(fingerprint "$ROOT/requirements-dev.txt" "$ROOT/export_tools/detectron2-source.txt")"
    [ -x "$DEV_ENV/bin/python" ] || new_venv "$DEV_ENV"
    site="$("$DEV_ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    server_site="$("$SERVER_ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$server_site" > "$site/d2t-server-environment.pth"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing export/test requirements into $DEV_ENV"
        "$DEV_ENV/bin/pip" install -q -r "$ROOT/requirements-dev.txt"
        (cd "$ROOT" && "$DEV_ENV/bin/python" -m export_tools.install_detectron2)
        echo "$want" > "$stamp"
    fi
}

ensure_system_packages
make_server_env
make_dev_env
"$SERVER_ENV/bin/python" - <<'EOF'
import numpy
assert int(numpy.__version__.split(".")[0]) < 2, f"server env has numpy {numpy.__version__}"
EOF
log "ready: server env $SERVER_ENV, export/test env $DEV_ENV"
