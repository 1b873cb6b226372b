#!/bin/sh
# Installs what building and testing nodedev-events needs, when missing.
# Safe to run again: it installs nothing that is already there.
# Usage: scripts/install-deps.sh [extra Debian packages...]
set -eu

need=""
for pkg in gcc g++ make pkg-config libudev-dev udev valgrind iproute2 doxygen man-db "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
        need="$need $pkg"
    fi
done

if [ -n "$need" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing Debian packages:$need (run as root or install them)" >&2
        exit 1
    fi
    echo "install-deps: installing$need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    echo "install-deps: cargo is in $HOME/.cargo/bin; add it to PATH" >&2
fi
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    echo "install-deps: a Rust toolchain (cargo, rustc >= 1.80) is required" >&2
    exit 1
fi
