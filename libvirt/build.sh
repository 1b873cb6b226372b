#!/bin/bash
# libvirt/build.sh: build a Debian libvirt release twice from the same
# source and the same meson options -- "stock" as Debian ships it, "ported"
# with our patch series -- and install each into a DESTDIR-style tree.
#
# LIBVIRT_VERSION chooses the release (default 9.0):
#   9.0   Debian 12's libvirt 9.0.0-4+deb12u2 (bookworm); the series is
#         libvirt/patches/*.patch (applied with patch -p1 in name order)
#         plus libvirt/files/<path in libvirt's tree>;
#         trees in target/libvirt/{stock,ported}, cache in target/libvirt-work/
#   11.3  Debian 13's libvirt 11.3.0-3+deb13u3 (trixie); the series is
#         libvirt/patches-11.3/*.patch, applied with `git am` onto a git
#         tree whose first commit is the stock source, built with
#         -Dnodedev_events=enabled -Dnodedev_events_threadpool=enabled;
#         trees in target/libvirt/11.3/{stock,ported}, cache in
#         target/libvirt-work/11.3/ (both releases' caches coexist)
#
#   <out>/stock/usr/{sbin/libvirtd,bin/virsh,bin/virt-admin,lib/...}
#   <out>/ported/usr/...   (+ libnodedev_events.so.0 next to libvirt.so.0)
#
# Usage: libvirt/build.sh [stock|ported|all|prepare]      (default: all)
#   prepare: only the packages, the source and our library (what
#   libvirt/series-test.sh needs)
#
# Idempotent: the downloaded source, the unpacked tree and both meson build
# directories are cached and reused; a second run rebuilds only what
# changed (the ported tree is synced file by file, so a changed patch
# recompiles only the files it touches). 11.3 builds through ccache (meson
# picks it up when installed; CCACHE_BASEDIR makes objects of the stock,
# ported and series trees shareable). Needs root for the Debian build
# packages it installs when they are missing.
#
# Environment: LIBVIRT_VERSION (9.0), LIBVIRT_PATCHES (11.3: another
# directory of patches, for trying a series before it is committed),
# LIBVIRT_DEB_VERSION (the release's Debian version), LIBVIRT_DEB_MIRROR
# (http://deb.debian.org), JOBS (2), NICE (10).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

what=${1:-all}
case "$what" in stock|ported|all|prepare) ;; *) echo "usage: $0 [stock|ported|all|prepare]" >&2; exit 2 ;; esac

version=${LIBVIRT_VERSION:-9.0}
mirror=${LIBVIRT_DEB_MIRROR:-http://deb.debian.org}
jobs=${JOBS:-2}
nice_cmd=(nice -n "${NICE:-10}")
libdir=lib/x86_64-linux-gnu

# The same options for both trees. The test driver and the JSON library
# are needed for libvirt's own test suite to pass; udev needs pciaccess.
meson_options=(
    --prefix=/usr --libdir="$libdir" --sysconfdir=/etc --localstatedir=/var
    -Drunstatedir=/run -Dauto_features=disabled
    -Ddriver_libvirtd=enabled -Ddriver_remote=enabled -Ddriver_test=enabled
    -Dudev=enabled -Dpciaccess=enabled
    -Dtests=enabled -Ddocs=disabled -Dinit_script=none
)
case "$version" in
    9.0)
        deb_version=${LIBVIRT_DEB_VERSION:-9.0.0-4+deb12u2}
        suites=(bookworm bookworm-security bookworm-updates)
        work="$root/target/libvirt-work"     # cache: download, unpacked source, build dirs
        out="$root/target/libvirt"           # the two install trees
        patches="$here/patches" files="$here/files" apply=patch
        meson_options+=(-Dyajl=enabled)
        ported_options=()
        extra_packages=(libyajl-dev)
        ;;
    11.3)
        deb_version=${LIBVIRT_DEB_VERSION:-11.3.0-3+deb13u3}
        suites=(trixie trixie-security trixie-updates)
        work="$root/target/libvirt-work/11.3"
        out="$root/target/libvirt/11.3"
        patches="${LIBVIRT_PATCHES:-$here/patches-11.3}" files="$here/files-11.3" apply=git-am
        # json-c replaced yajl in 10.x; without libnl, virnetdevbridge.c
        # does not build on Linux (RTM_DELLINK undeclared).
        meson_options+=(-Djson_c=enabled -Dlibnl=enabled)
        ported_options=(-Dnodedev_events=enabled -Dnodedev_events_threadpool=enabled)
        extra_packages=(libjson-c-dev libnl-3-dev libnl-route-3-dev git ccache)
        # ccache keys objects by paths relative to the work directory.
        export CCACHE_BASEDIR="$work" CCACHE_NOHASHDIR=1
        ;;
    *) echo "libvirt/build.sh: LIBVIRT_VERSION must be 9.0 or 11.3, not $version" >&2; exit 2 ;;
esac
upstream="libvirt-${deb_version%-*}"
upstream=${upstream/libvirt-*:/libvirt-}
pristine="$work/pristine/$upstream"  # Debian's source with Debian's patches: the stock source
ported_src="$work/ported-src/$upstream"
nde_prefix="$work/nde"               # our library, installed for pkg-config

log() { echo "libvirt/build.sh: $*"; }

install_build_packages() {
    local need=() pkg
    for pkg in meson ninja-build gcc pkg-config perl xsltproc libpciaccess-dev \
               libglib2.0-dev libudev-dev libxml2-utils libgnutls28-dev libxml2-dev \
               libtirpc-dev rpcsvc-proto dpkg-dev patch diffutils "${extra_packages[@]}"; do
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
    local suite
    for suite in "${suites[@]}"; do
        case "$suite" in
            *-security) echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror/debian-security $suite main" ;;
            *) echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror/debian $suite main" ;;
        esac
    done > "$apt_dir/sources.list"
    local apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list"
                    -o Dir::Etc::sourceparts=/nonexistent
                    -o "Dir::State::Lists=$apt_dir/lists"
                    -o APT::Sandbox::User=root)
    if ! ls "$dl"/libvirt_"${deb_version#*:}".dsc >/dev/null 2>&1; then
        log "fetching Debian source libvirt=$deb_version"
        apt-get "${apt_opts[@]}" -qq update
        (cd "$dl" && apt-get "${apt_opts[@]}" source --download-only "libvirt=$deb_version") ||
            dsc_from_index "${apt_opts[@]}"
    fi
    log "unpacking with Debian's patches"
    rm -rf "$work/pristine"
    mkdir -p "$work/pristine"
    (cd "$work/pristine" && dpkg-source --no-check -x "$dl/libvirt_${deb_version#*:}.dsc" "$upstream" >/dev/null)
    touch "$pristine/.nde-unpacked"
}

# The mirror sometimes answers 404 for a source package's .dsc (seen for
# libvirt 11.3.0-3+deb13u3 in trixie) while its tarballs download. Then the
# .dsc is written from the package's stanza in the Sources index apt just
# verified against the signed InRelease: dpkg-source still checks every
# tarball's size and checksums against it. (The upstream signature .asc,
# not served either, is left out; dpkg-source does not need it.)
dsc_from_index() {
    local dsc="$dl/libvirt_${deb_version#*:}.dsc" f
    for f in "libvirt_${upstream#libvirt-}.orig.tar.xz" "libvirt_${deb_version#*:}.debian.tar.xz"; do
        [ -s "$dl/$f" ] || { echo "libvirt/build.sh: $f was not downloaded" >&2; exit 1; }
    done
    log "the .dsc was not served: writing it from the verified Sources index"
    apt-cache "$@" showsrc libvirt | awk -v want="$deb_version" '
        /^Package: / { keep = 0; stanza = "" }
        { stanza = stanza $0 "\n" }
        $0 == "Version: " want { keep = 1 }
        /^$/ { if (keep) { printf "%s", stanza; keep = 0; done = 1 } stanza = "" }
        END { if (keep && !done) printf "%s", stanza }' |
    awk '/^(Package|Binary|Version|Maintainer|Uploaders|Architecture|Standards-Version|Format|Homepage|Vcs-Browser|Vcs-Git|Build-Depends|Package-List|Testsuite|Testsuite-Triggers):/ { field = 1; sub(/^Package:/, "Source:"); print; next }
         /^(Files|Checksums-Sha256|Checksums-Sha1|Checksums-Sha512):/ { field = 2; print; next }
         /^[^ ]/ { field = 0; next }
         /^ / { if (field == 1) print; else if (field == 2 && $3 !~ /\.(dsc|asc)$/) print }' > "$dsc"
    grep -q '^Files:' "$dsc" && grep -q "^Version: $deb_version\$" "$dsc" ||
        { echo "libvirt/build.sh: libvirt $deb_version is not in the Sources index" >&2; rm -f "$dsc"; exit 1; }
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

# The ported source: Debian's tree + our series. Assembled in a scratch
# tree (the stage), then only files whose content differs are copied into
# the cached build source, so ninja sees new mtimes only on what really
# changed.
#
# 9.0: the stage is a copy of the stock tree, the patches applied with
# patch -p1 in name order, then libvirt/files copied over it.
stage_patch() {
    local stage="$work/ported-stage/$upstream" p f
    rm -rf "$work/ported-stage"
    mkdir -p "$work/ported-stage"
    cp -a "$pristine" "$stage"
    for p in "$patches"/*.patch; do
        [ -e "$p" ] || continue
        log "applying $(basename "$p")" >&2
        patch -d "$stage" -p1 -s --no-backup-if-mismatch -F0 < "$p"
    done
    if [ -d "$files" ]; then
        (cd "$files" && find . -type f) | while read -r f; do
            mkdir -p "$stage/$(dirname "$f")"
            cp "$files/$f" "$stage/$f"
        done
    fi
    echo "$stage"
}

# 11.3: the stage is a git tree whose first commit is the stock source
# (tag "stock"), reset to it, with the series applied by `git am` (the
# patches' authors; the committer is irrelevant here).
stage_git_am() {
    local g="$work/ported-git" p
    local git=(git -C "$g" -c user.name="nodedev-events build" -c user.email="build@nodedev-events.invalid"
               -c core.autocrlf=false -c advice.detachedHead=false)
    if ! git -C "$g" rev-parse -q --verify refs/tags/stock >/dev/null 2>&1; then
        log "making the stock git tree ${g#"$root"/}" >&2
        rm -rf "$g"
        cp -a "$pristine" "$g"
        rm -f "$g/.nde-unpacked"
        "${git[@]}" init -q
        "${git[@]}" add -A -f
        "${git[@]}" commit -q -m "libvirt $deb_version: Debian's source with Debian's patches (stock)"
        "${git[@]}" tag stock
    fi
    "${git[@]}" am --abort >/dev/null 2>&1 || true
    "${git[@]}" checkout -q -f --detach stock
    "${git[@]}" clean -q -f -d -x
    local list=("$patches"/*.patch)
    if [ -e "${list[0]}" ]; then
        log "git am ${#list[@]} patches from ${patches#"$root"/}" >&2
        "${git[@]}" am -q --whitespace=nowarn "${list[@]}" >&2 || {
            echo "libvirt/build.sh: git am failed:" >&2; "${git[@]}" am --show-current-patch=diff 2>&1 | head -5 >&2
            "${git[@]}" am --abort >/dev/null 2>&1; exit 1; }
    fi
    echo "$g"
}

sync_ported_source() {
    local stage f
    if [ "$apply" = git-am ]; then stage=$(stage_git_am); else stage=$(stage_patch); fi
    if [ ! -d "$ported_src" ]; then
        mkdir -p "$(dirname "$ported_src")"
        cp -a "$stage" "$ported_src"
        rm -rf "$ported_src/.git"
    else
        # Changed or new files: copy over (new mtime). Files gone from the
        # stage (an added file dropped from the series): remove.
        { diff -rq -x .git -x .nde-unpacked "$stage" "$ported_src" 2>/dev/null || true; } | while read -r line; do
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
                    rm -rf "$f"; log "removed: ${f#"$ported_src"/}" ;;
            esac
        done
    fi
    [ "$apply" = git-am ] || rm -rf "$work/ported-stage"
}

# configure (once, with the extra options given), build, install into
# <out>/<flavour>
build_tree() {
    local flavour=$1 src=$2 build="$work/build-$1" dest="$out/$1"
    shift 2
    if [ ! -f "$build/build.ninja" ]; then
        log "configuring $flavour"
        rm -rf "$build"
        "${nice_cmd[@]}" meson setup "$build" "$src" "${meson_options[@]}" "$@" >"$work/setup-$flavour.log" 2>&1 || {
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

if [ "$what" = prepare ]; then
    install_nde
    # The stock option set, one per line, for libvirt/series-test.sh.
    printf '%s\n' "${meson_options[@]}" > "$work/stock-options.txt"
    log "ready: ${pristine#"$root"/} and ${nde_prefix#"$root"/}"
    exit 0
fi
if [ "$what" = stock ] || [ "$what" = all ]; then
    build_tree stock "$pristine"
fi
if [ "$what" = ported ] || [ "$what" = all ]; then
    install_nde
    sync_ported_source
    build_tree ported "$ported_src" ${ported_options[@]+"${ported_options[@]}"}
    # The ported libvirt.so.0 finds our library next to it (RUNPATH $ORIGIN).
    cp -a "$nde_prefix"/lib/libnodedev_events.so.* "$out/ported/usr/$libdir/"
fi

for flavour in stock ported; do
    [ -x "$out/$flavour/usr/sbin/libvirtd" ] && log "ready: ${out#"$root"/}/$flavour"
done
exit 0
