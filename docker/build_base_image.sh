#!/usr/bin/env bash
# Build a Debian bookworm + Python 3.11 base image locally, for hosts that reach Debian's
# package mirror but no container registry (the Dockerfiles' default base,
# python:3.11-slim-bookworm, comes from Docker Hub).
#
#   docker/build_base_image.sh [TAG]        # default tag: d2-triton/bookworm-python3.11
#
# debootstrap (root) writes a minimal bookworm with python3.11, venv, the shared libpython
# (Triton's Python-backend stub embeds it) and CA certificates; `docker import` makes it an
# image.  The host's CA bundle replaces Debian's, so a TLS-inspecting proxy this host trusts
# is trusted inside the build too (set HOST_CA_BUNDLE= to keep Debian's).
set -euo pipefail

TAG="${1:-d2-triton/bookworm-python3.11}"
# The Debian mirror this host's apt is configured with (deb822 .sources files or a classic
# sources.list line), unless DEBIAN_MIRROR names one.
host_mirror() {
    {  # either file may be missing: that is no error here (hence the || true)
        grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true
        grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | sed -E 's/^deb (\[[^]]*\] )?//' \
            | awk '{print $1}' || true
    } | { grep -v -- '-security' || true; } | head -n 1
}
MIRROR="${DEBIAN_MIRROR:-$(host_mirror)}"
[ -n "$MIRROR" ] || { echo "no Debian mirror in apt's configuration: set DEBIAN_MIRROR"; exit 1; }
HOST_CA_BUNDLE="${HOST_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG exists"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "needs debootstrap (apt-get install debootstrap)"; exit 1; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,libpython3.11,ca-certificates \
    bookworm "$root" "$MIRROR"
if [ -n "$HOST_CA_BUNDLE" ] && [ -f "$HOST_CA_BUNDLE" ]; then
    cp "$HOST_CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["/bin/bash"]' \
    - "$TAG"
echo "built base image $TAG"
