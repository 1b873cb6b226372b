#!/bin/bash
# libvirt/build.sh: build Debian 12's libvirt 9.0 twice from the same source
# and the same meson options -- "stock" as Debian ships it, "ported" with our
# patch series (libvirt/patches/*.patch, in name order) and our new files
# (libvirt/files/<path in libvirt's tree>) -- and install each into a
# DESTDIR-style tree:
#
#   target/libvirt/stock/usr/{sbin/libvirtd,bin/virsh,bin/virt-admin,lib/...}
#   target/libvirt/ported/usr/...   (+ libnodedev_events.so.0 next to libvirt.so.0)
#
# Usage: libvirt/build.sh [stock|ported|all]      (default: all)
#
# Idempotent: the downloaded source, the unpacked tree and both meson build
# directories are cached under target/libvirt-work/ and reused; a second run
# rebuilds only what changed (the ported tree is synced file by file, so a
# changed patch recompiles only the files it touches). Needs root for the
# Debian build packages it installs when they are missing.
#
# Environment: LIBVIRT_DEB_VERSION (9.0.0-4+deb12u2), LIBVIRT_DEB_MIRROR
# (http://deb.debian.org), JOBS (2), NICE (10).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

what=${1:-all}
case "$what" in stock|ported|all) ;; *) echo "usage: $0 [stock|ported|all]" >&2; exit 2 ;; esac

deb_version=${LIBVIRT_DEB_VERSION:-9.0.0-4+deb12u2}
mirror=${LIBVIRT_DEB_MIRROR:-http://deb.debian.org}
jobs=${JOBS:-2}
nice_cmd=(nice -n "${NICE:-10}")

work="$root/target/libvirt-work"     # cache: download, unpacked source, build dirs
out="$root/target/libvirt"           # the two install trees
upstream="libvirt-9.0.0"
pristine="$work/pristine/$upstream"  # Debian's source with Debian's patches: the stock source
ported_src="$work/ported-src/$upstream"
nde_prefix="$work/nde"               # our library, installed for pkg-config
libdir=lib/x86_64-linux-gnu

# The same options for both trees. The test driver and yajl are needed for
# libvirt's own test suite to pass; udev needs pciaccess.
meson_options=(
    --prefix=/usr --libdir="$libdir" --sysconfdir=/etc --localstatedir=/var
    -Drunstatedir=/run -Dauto_features=disabled
    -Ddriver_libvirtd=enabled -Ddriver_remote=enabled -Ddriver_test=enabled
    -Dudev=enabled -Dpciaccess=enabled -Dyajl=enabled
    -Dtests=enabled -Ddocs=disabled -Dinit_script=none
)

log() { echo "libvirt/build.sh: $*"; }

install_build_packages() {
    local need=() pkg
    for pkg in meson ninja-build gcc pkg-config perl xsltproc libpciaccess-dev libyajl-dev \
               libglib2.0-dev libudev-dev libxml2-utils libgnutls28-dev libxml2-dev \
               libtirpc-dev rpcsvc-proto dpkg-dev patch diffutils; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
    done
    [ ${#need[@]} -eq 0 ] && return
    if [ "$(id -u)" -ne 0 ]; then
        echo "libvirt/build.sh: missing Debian packages: ${need[*]} (run as root or install them)" >&2
        exit 1
    fi
    log "installing ${need[*]}"
    # A new machine may have no package lists yet.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null
}

# Debian's source package by name, through a private deb-src list: the
# machine's apt configuration is not touched.
fetch_source() {
    [ -f "$pristine/.nde-unpacked" ] && return
    local apt_dir="$work/apt" dl="$work/dl"
    mkdir -p "$apt_dir/lists/partial" "$dl"
    cat > "$apt_dir/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror/debian-security bookworm-security main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror/debian bookworm-updates main
EOF
    local apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list"
                    -o Dir::Etc::sourceparts=/nonexistent
                    -o "Dir::State::Lists=$apt_dir/lists"
                    -o APT::Sandbox::User=root)
    if ! ls "$dl"/libvirt_"${deb_version#*:}".dsc >/dev/null 2>&1; then
        log "fetching Debian source libvirt=$deb_version"
        apt-get "${apt_opts[@]}" -qq update
        (cd "$dl" && apt-get "${apt_opts[@]}" source --download-only "libvirt=$deb_version")
    fi
    log "unpacking with Debian's patches"
    rm -rf "$work/pristine"
    mkdir -p "$work/pristine"
    (cd "$work/pristine" && dpkg-source --no-check -x "$dl/libvirt_${deb_version#*:}.dsc" "$upstream" >/dev/null)
    touch "$pristine/.nde-unpacked"
}

# Our library, built and installed under target/libvirt-work/nde so that the
# ported tree's meson finds it through PKG_CONFIG_PATH.
#
# NDE_INSTALLED_PREFIX takes an installed nodedev-events instead of building
# the tree's: e.g. NDE_INSTALLED_PREFIX=/usr with the packages of `make deb`
# installed (libnodedev-events-dev). Its nodedev-events.pc (which still
# points at that prefix's headers and library) and its libnodedev_events.so.*
# are copied into target/libvirt-work/nde, where the rest of this script
# looks for them.
install_nde() {
    if [ -n "${NDE_INSTALLED_PREFIX:-}" ]; then
        local p=$NDE_INSTALLED_PREFIX dirs pc_dir pc_libdir
        # Only that prefix's pkg-config directories (multiarch, lib, lib64).
        dirs="$p/lib/$(gcc -print-multiarch)/pkgconfig:$p/lib/pkgconfig:$p/lib64/pkgconfig"
        pc_dir=$(PKG_CONFIG_LIBDIR=$dirs pkg-config --variable=pcfiledir nodedev-events) ||
            { echo "build.sh: no nodedev-events.pc in $dirs" >&2; exit 1; }
        pc_libdir=$(PKG_CONFIG_LIBDIR=$dirs pkg-config --variable=libdir nodedev-events)
        log "taking the installed libnodedev_events of $pc_dir"
        rm -rf "$nde_prefix"
        mkdir -p "$nde_prefix/lib/pkgconfig"
        cp "$pc_dir/nodedev-events.pc" "$nde_prefix/lib/pkgconfig/"
        cp -a "$pc_libdir"/libnodedev_events.so.* "$nde_prefix/lib/"
        return
    fi
    log "building libnodedev_events"
    "${nice_cmd[@]}" make -s lib >/dev/null
    make -s install PREFIX="$nde_prefix" LDCONFIG=true NDE_INSTALL_DEPS= >/dev/null
}

# The ported source: Debian's tree + our patches + our files. Assembled in a
# scratch copy, then only files whose content differs are copied into the
# cached tree, so ninja sees new mtimes only on what really changed.
sync_ported_source() {
    local stage="$work/ported-stage/$upstream" p f
    rm -rf "$work/ported-stage"
    mkdir -p "$work/ported-stage"
    cp -a "$pristine" "$stage"
    for p in "$here"/patches/*.patch; do
        [ -e "$p" ] || continue
        log "applying $(basename "$p")"
        patch -d "$stage" -p1 -s --no-backup-if-mismatch -F0 < "$p"
    done
    if [ -d "$here/files" ]; then
        (cd "$here/files" && find . -type f) | while read -r f; do
            mkdir -p "$stage/$(dirname "$f")"
            cp "$here/files/$f" "$stage/$f"
        done
    fi
    if [ ! -d "$ported_src" ]; then
        mkdir -p "$(dirname "$ported_src")"
        mv "$stage" "$ported_src"
    else
        # Changed or new files: copy over (new mtime). Files gone from the
        # stage (an added file dropped from libvirt/files): remove.
        { diff -rq "$stage" "$ported_src" 2>/dev/null || true; } | while read -r line; do
            case "$line" in
                "Files $stage/"*" and "*" differ")
                    f=${line#"Files $stage/"}; f=${f%% and *}
                    cp "$stage/$f" "$ported_src/$f"; log "changed: $f" ;;
                "Only in $stage"*)
                    f=${line#"Only in "}; f="${f%%: *}/${f#*: }"; f=${f#"$stage"}; f=${f#/}
                    mkdir -p "$(dirname "$ported_src/$f")"
                    cp -r "$stage/$f" "$ported_src/$f"; log "added: $f" ;;
                "Only in $ported_src"*)
                    f=${line#"Only in "}; f="${f%%: *}/${f#*: }"
                    case "$f" in */.nde-unpacked) continue ;; esac
                    rm -rf "$f"; log "removed: ${f#"$ported_src"/}" ;;
            esac
        done
        rm -rf "$work/ported-stage"
    fi
}

# configure (once), build, install into target/libvirt/<flavour>
build_tree() {
    local flavour=$1 src=$2 build="$work/build-$1" dest="$out/$1"
    if [ ! -f "$build/build.ninja" ]; then
        log "configuring $flavour"
        rm -rf "$build"
        "${nice_cmd[@]}" meson setup "$build" "$src" "${meson_options[@]}" >"$work/setup-$flavour.log" 2>&1 || {
            tail -30 "$work/setup-$flavour.log" >&2; exit 1; }
    fi
    log "building $flavour ($build)"
    "${nice_cmd[@]}" ninja -C "$build" -j "$jobs" >"$work/ninja-$flavour.log" 2>&1 || {
        grep -B2 -A20 -m1 "FAILED\|error:" "$work/ninja-$flavour.log" >&2 || tail -30 "$work/ninja-$flavour.log" >&2
        exit 1; }
    log "installing $flavour into $dest"
    rm -rf "$dest"
    meson install -C "$build" --no-rebuild --quiet --destdir "$dest" >"$work/install-$flavour.log" 2>&1 || {
        tail -30 "$work/install-$flavour.log" >&2; exit 1; }
}

install_build_packages
fetch_source
mkdir -p "$out"

# Both trees see the same PKG_CONFIG_PATH; only the ported patches ask for
# nodedev-events.
export PKG_CONFIG_PATH="$nde_prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

if [ "$what" = stock ] || [ "$what" = all ]; then
    build_tree stock "$pristine"
fi
if [ "$what" = ported ] || [ "$what" = all ]; then
    install_nde
    sync_ported_source
    build_tree ported "$ported_src"
    # The ported libvirt.so.0 finds our library next to it (RUNPATH $ORIGIN).
    cp -a "$nde_prefix"/lib/libnodedev_events.so.* "$out/ported/usr/$libdir/"
fi

for flavour in stock ported; do
    [ -x "$out/$flavour/usr/sbin/libvirtd" ] && log "ready: target/libvirt/$flavour"
done
exit 0
