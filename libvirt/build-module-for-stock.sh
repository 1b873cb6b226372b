#!/bin/bash
# libvirt/build-module-for-stock.sh: the ported node-device driver as a
# module for Debian's own libvirtd of the same release.
#
# LIBVIRT_VERSION (9.0 by default) chooses the release:
#   9.0   Debian 12's /usr/sbin/libvirtd 9.0 (package libvirt-daemon,
#         installed here when missing); output in
#         target/libvirt/module-for-stock/
#   11.3  Debian's 11.3 daemon from bookworm-backports (libvirt0,
#         libvirt-common, libvirt-daemon, libvirt-daemon-common,
#         libvirt-daemon-driver-nodedev, libvirt-clients, libvirt-daemon-log,
#         libvirt-daemon-lock 11.3.0-2~bpo12+1, libnl-3-200 and libssh-4 from
#         bookworm; and Debian's mdevctl, which the mdevctl check runs),
#         downloaded through a private apt list (`apt-get
#         download`; the machine's apt configuration is not touched) and
#         extracted with dpkg-deb -x into target/libvirt/11.3/debian/ --
#         never installed; it runs with LD_LIBRARY_PATH on that tree's
#         usr/lib/x86_64-linux-gnu and lib/x86_64-linux-gnu. Output in
#         target/libvirt/11.3/module-for-stock/
#
# The driver files of the ported tree (every C file of the node-device
# implementation library) are compiled with the exact flags the ported
# meson build uses (read from its compile_commands.json, so they see the
# build tree's generated headers), then linked against *Debian's*
# libvirt.so.0, whose LIBVIRT_PRIVATE_<release> symbols are those the
# module imports (-z defs checks that every one resolves there), and
# against libnodedev_events (placed next to the module, found through
# RUNPATH $ORIGIN).
#
# Output: <out>/libvirt_driver_nodedev.so and libnodedev_events.so.0. Load
# it with LIBVIRT_DRIVER_DIR pointing at that directory (check 2 does, as
# its third flavour "debian-ported").
#
# Environment: LIBVIRT_VERSION (9.0), LIBVIRT_BUILD (the ported meson build
# made by libvirt/build.sh), NDE_PREFIX (our installed library), OUT.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=${LIBVIRT_VERSION:-9.0}
case "$version" in
    9.0)
        work=$root/target/libvirt-work
        out=${OUT:-$root/target/libvirt/module-for-stock}
        want_version=9.0.0-4+deb12u2
        debian_tree=
        ;;
    11.3)
        work=$root/target/libvirt-work/11.3
        out=${OUT:-$root/target/libvirt/11.3/module-for-stock}
        want_version=11.3.0-2~bpo12+1
        debian_tree=$root/target/libvirt/11.3/debian
        ;;
    *) echo "LIBVIRT_VERSION must be 9.0 or 11.3, not $version" >&2; exit 2 ;;
esac
build=${LIBVIRT_BUILD:-$work/build-ported}
nde_prefix=${NDE_PREFIX:-$work/nde}
libvirt_so=$debian_tree/usr/lib/x86_64-linux-gnu/libvirt.so.0
mirror=${LIBVIRT_DEB_MIRROR:-http://deb.debian.org}

log() { echo "libvirt/build-module-for-stock.sh: $*"; }

# Debian's 11.3 daemon, client and libraries, extracted (not installed).
fetch_debian_daemon() {
    local dl="$work/debian-daemon" pkgs f
    pkgs=(libvirt0 libvirt-common libvirt-daemon libvirt-daemon-common libvirt-daemon-driver-nodedev
          libvirt-clients libvirt-daemon-log libvirt-daemon-lock)
    [ -f "$debian_tree/.nde-extracted-$want_version" ] && [ -x "$debian_tree/usr/bin/mdevctl" ] && return
    mkdir -p "$dl/apt/lists/partial" "$dl/apt/cache" "$dl/debs"
    cat > "$dl/apt/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror/debian bookworm-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror/debian-security bookworm-security main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror/debian bookworm-updates main
EOF
    local apt_opts=(-o "Dir::Etc::sourcelist=$dl/apt/sources.list" -o Dir::Etc::sourceparts=/nonexistent
                    -o "Dir::State::Lists=$dl/apt/lists" -o "Dir::Cache=$dl/apt/cache"
                    -o APT::Sandbox::User=root)
    log "downloading Debian's libvirt $want_version (bookworm-backports) into ${dl#"$root"/}/debs"
    apt-get "${apt_opts[@]}" -qq update
    rm -f "$dl"/debs/*.deb
    (cd "$dl/debs" && apt-get "${apt_opts[@]}" -qq download \
        "${pkgs[@]/%/=$want_version}" libnl-3-200 libssh-4 mdevctl)
    rm -rf "$debian_tree"
    mkdir -p "$debian_tree"
    for f in "$dl"/debs/*.deb; do dpkg-deb -x "$f" "$debian_tree"; done
    touch "$debian_tree/.nde-extracted-$want_version"
    log "extracted into ${debian_tree#"$root"/}"
}


if [ "$version" = 11.3 ]; then
    fetch_debian_daemon
    have=$want_version
# Debian's daemon and client, the same version as the source we patch.
elif ! dpkg-query -W -f='${Status}' libvirt-daemon 2>/dev/null | grep -q "ok installed" ||
   ! dpkg-query -W -f='${Status}' libvirt-clients 2>/dev/null | grep -q "ok installed"; then
    [ "$(id -u)" = 0 ] || { echo "libvirt-daemon is not installed (run as root to install it)" >&2; exit 1; }
    log "installing Debian's libvirt-daemon and libvirt-clients"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends libvirt-daemon libvirt-clients >/dev/null
fi
[ -f "$build/compile_commands.json" ] || {
    echo "$build is not a configured ported build: run make libvirt (LIBVIRT_VERSION=$version) first" >&2; exit 1; }
[ -f "$nde_prefix/lib/pkgconfig/nodedev-events.pc" ] || {
    echo "$nde_prefix has no installed nodedev-events: run make libvirt (LIBVIRT_VERSION=$version) first" >&2; exit 1; }

if [ "$version" = 9.0 ]; then
    have=$(dpkg-query -W -f='${Version}' libvirt0)
    [ "$have" = "$want_version" ] || log "warning: installed libvirt0 is $have, the patched source is $want_version"
fi

# Generated headers the driver files include.
nice -n 10 ninja -C "$build" src/access/viraccessapicheck.h >/dev/null

rm -rf "$out/obj"
mkdir -p "$out/obj"
export PKG_CONFIG_PATH="$nde_prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# The compiler command of the ported build for each file of the node-device
# implementation library, minus its output options, as "source<TAB>command"
# lines; run from the build directory as ninja would.
python3 - "$build/compile_commands.json" > "$out/obj/commands.txt" <<'EOF'
import json, shlex, sys
for e in json.load(open(sys.argv[1])):
    if not ("/src/node_device/" in e["file"] and "nodedev_impl" in e["output"]):
        continue
    args = shlex.split(e["command"])
    keep, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MQ"):
            skip = True
            continue
        if a in ("-MD", "-c") or a.endswith(".c"):
            continue
        keep.append(a)
    print(e["file"] + "\t" + shlex.join(keep))
EOF
[ -s "$out/obj/commands.txt" ] || { echo "no node-device compile commands in $build" >&2; exit 1; }
objs=()
while IFS=$'\t' read -r src cmd; do
    obj="$out/obj/$(basename "${src%.c}").o"
    (cd "$build" && eval "$cmd" -c "\"$src\"" -o "\"$obj\"")
    objs+=("$obj")
done < "$out/obj/commands.txt"

# Linked to Debian's libvirt.so.0 (not the build tree's): every
# LIBVIRT_PRIVATE_<release> symbol must resolve there (-z defs checks it).
cc -shared -o "$out/libvirt_driver_nodedev.so" "${objs[@]}" \
    "$libvirt_so" \
    $(pkg-config --libs glib-2.0 gobject-2.0 gio-2.0 gio-unix-2.0 libxml-2.0 pciaccess libudev nodedev-events) \
    -Wl,-z,nodelete,-z,defs,-z,relro,-z,now -Wl,-rpath,'$ORIGIN'
cp -aL "$nde_prefix"/lib/libnodedev_events.so.0 "$out/"
log "ready: $out/libvirt_driver_nodedev.so (${#objs[@]} files, for Debian's libvirtd $have${debian_tree:+ in ${debian_tree#"$root"/}})"
