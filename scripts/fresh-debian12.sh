#!/bin/bash
# scripts/fresh-debian12.sh: runs a command in a fresh clone of this
# repository on a fresh Debian 12 system, to show that our commands install
# what they need (`make check-libvirt-fresh` runs `make libvirt && make
# check-libvirt` this way).
#
#   scripts/fresh-debian12.sh [--root DIR] [--commit REV] [--] COMMAND...
#   e.g. scripts/fresh-debian12.sh -- 'make libvirt && make check-libvirt'
#
# The system is a debootstrap of Debian 12 (bookworm, its default package
# set plus git, gcc, make and ca-certificates: what a new machine of ours
# has besides a Rust toolchain), made once in DIR/base (DIR defaults to
# target/fresh-debian12; delete it for a new one) and copied afresh for
# each run, so every run starts with nothing installed by an earlier one.
# The host's Rust toolchain is mounted read-only (the README asks for one);
# crates come from crates.io. The kernel, DNS resolver and CA bundle are
# the host's. Everything runs in a private mount namespace, so the mounts
# vanish with the run. Needs root and network access to deb.debian.org and
# crates.io.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
root="$here/target/fresh-debian12"
commit=HEAD
usage() { echo "usage: $0 [--root DIR] [--commit REV] [--] COMMAND..." >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=$2; shift 2 ;;
        --commit) commit=$2; shift 2 ;;
        --) shift; break ;;
        -*) usage ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || usage
[ "$(id -u)" = 0 ] || { echo "fresh-debian12: run as root" >&2; exit 1; }
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
[ -x "$cargo_bin/cargo" ] || { echo "fresh-debian12: no Rust toolchain in $cargo_bin" >&2; exit 1; }
rev=$(git -C "$here" rev-parse --verify "$commit^{commit}")
# The repository itself (a worktree's .git is only a pointer to it).
gitdir=$(cd "$here" && cd "$(git rev-parse --git-common-dir)" && pwd)

log() { echo "fresh-debian12: $*"; }

# The pristine system, made once.
base="$root/base"
if [ ! -x "$base/usr/bin/git" ]; then
    command -v debootstrap > /dev/null || {
        log "installing debootstrap (on this machine, to make the system)"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap > /dev/null
    }
    rm -rf "$base" "$base.tmp"
    mkdir -p "$root"
    log "debootstrap bookworm into $base"
    debootstrap --include=git,gcc,make,libc6-dev,ca-certificates bookworm "$base.tmp" \
        http://deb.debian.org/debian > "$root/debootstrap.log" 2>&1 ||
        { tail -20 "$root/debootstrap.log"; exit 1; }
    # The sources a Debian 12 machine has: the release, its updates and
    # security.
    cat > "$base.tmp/etc/apt/sources.list" <<EOF
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    # No package lists, as on a new machine made from an image.
    rm -rf "$base.tmp/var/lib/apt/lists/"*
    mv "$base.tmp" "$base"
fi

# This run's copy.
sys="$root/run-$(date -u +%Y%m%dT%H%M%SZ)-${rev:0:7}"
log "copying the system to $sys"
cp -a "$base" "$sys"
mkdir -p "$sys/root/.rustup" "$sys/root/.cargo/bin" "$sys/src"
cp -a "$cargo_bin/." "$sys/root/.cargo/bin/"
# The machine's network, not an installation: its resolver, and its CA
# bundle (this network's TLS proxy signs with a CA of its own).
cp /etc/resolv.conf "$sys/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$sys/etc/ssl/certs/ca-certificates.crt"

log "running '$*' at ${rev:0:7}; output in $sys/run.log"
status=0
unshare --mount --propagation private -- /bin/bash -euo pipefail -c '
    sys=$1 gitdir=$2 rustup_home=$3 rev=$4; shift 4
    # The root of the system is a mount point, as on a machine: the
    # checks change its propagation in their own namespaces.
    mount --bind "$sys" "$sys"
    mount -t proc proc "$sys/proc"
    mount --rbind /sys "$sys/sys"
    mount --rbind /dev "$sys/dev"
    mount -t tmpfs tmpfs "$sys/run"
    mount -t tmpfs tmpfs "$sys/tmp"
    mount --bind -o ro "$rustup_home" "$sys/root/.rustup"
    mount --bind -o ro "$gitdir" "$sys/src"
    chroot "$sys" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -euo pipefail -c "
            git clone -q /src /root/nodedev-events
            cd /root/nodedev-events
            git checkout -q $rev
            echo \"fresh-debian12: \$(. /etc/os-release; echo \$PRETTY_NAME), kernel \$(uname -r), \$(nproc) cores, commit \$(git rev-parse --short HEAD)\"
            $*
        "
 ' fresh "$sys" "$gitdir" "$rustup_home" "$rev" "$@" > "$sys/run.log" 2>&1 || status=$?
tail -40 "$sys/run.log"
log "exit $status ($sys)"
exit $status
