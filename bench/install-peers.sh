#!/usr/bin/env bash
# Install what the benchmark's peers need when it is missing: libvirt 9.0
# (libvirt0 + libvirt-dev: virThreadPool lives in libvirt.so.0), GLib
# (libglib2.0-dev: GThreadPool, and the harness links it), libudev-dev
# (uevent-bench links libudev: its own receive loop), plus pkg-config.
# Does nothing when everything is there.
set -euo pipefail

missing=()
for pkg in libvirt0 libvirt-dev libglib2.0-dev libudev-dev pkg-config; do
    if ! dpkg -s "$pkg" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
if command -v pkg-config >/dev/null 2>&1; then
    pkg-config --exists glib-2.0 || missing+=(libglib2.0-dev)
    pkg-config --exists libvirt || missing+=(libvirt-dev)
    pkg-config --exists libudev || missing+=(libudev-dev)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

# de-duplicate
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "bench: installing ${missing[*]}" >&2
if ! command -v apt-get >/dev/null 2>&1; then
    echo "bench: apt-get not found; install ${missing[*]} by hand" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "bench: need root to install ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
