#!/bin/bash
# libvirt/build-module-for-stock.sh: the ported node-device driver as a
# module for Debian's own /usr/sbin/libvirtd 9.0 (package libvirt-daemon,
# installed here when missing).
#
# The two driver files (node_device_driver.c, node_device_udev.c) of the
# ported tree are compiled with the exact flags the ported meson build uses
# (read from its compile_commands.json, so they see the build tree's
# generated headers), then linked against the *installed* libvirt.so.0,
# whose LIBVIRT_PRIVATE_9.0.0 symbols are those the module imports, and
# against libnodedev_events (placed next to the module, found through
# RUNPATH $ORIGIN).
#
# Output: target/libvirt/module-for-stock/libvirt_driver_nodedev.so and
# libnodedev_events.so.0. Load it with LIBVIRT_DRIVER_DIR pointing at that
# directory (check-2 does, as its third flavour "debian+module").
#
# Environment: LIBVIRT_BUILD (target/libvirt-work/build-ported, made by
# libvirt/build.sh), NDE_PREFIX (target/libvirt-work/nde: our installed
# library), OUT (target/libvirt/module-for-stock).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${LIBVIRT_BUILD:-$root/target/libvirt-work/build-ported}
nde_prefix=${NDE_PREFIX:-$root/target/libvirt-work/nde}
out=${OUT:-$root/target/libvirt/module-for-stock}
want_version=9.0.0-4+deb12u2
libvirt_so=/usr/lib/x86_64-linux-gnu/libvirt.so.0

log() { echo "libvirt/build-module-for-stock.sh: $*"; }

[ -f "$build/compile_commands.json" ] || {
    echo "$build is not a configured ported build: run make libvirt first" >&2; exit 1; }
[ -f "$nde_prefix/lib/pkgconfig/nodedev-events.pc" ] || {
    echo "$nde_prefix has no installed nodedev-events: run make libvirt first" >&2; exit 1; }

# Debian's daemon and client, the same version as the source we patch.
if ! dpkg-query -W -f='${Status}' libvirt-daemon 2>/dev/null | grep -q "ok installed" ||
   ! dpkg-query -W -f='${Status}' libvirt-clients 2>/dev/null | grep -q "ok installed"; then
    [ "$(id -u)" = 0 ] || { echo "libvirt-daemon is not installed (run as root to install it)" >&2; exit 1; }
    log "installing Debian's libvirt-daemon and libvirt-clients"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends libvirt-daemon libvirt-clients >/dev/null
fi
have=$(dpkg-query -W -f='${Version}' libvirt0)
[ "$have" = "$want_version" ] || log "warning: installed libvirt0 is $have, the patched source is $want_version"

# Generated headers the two files include.
nice -n 10 ninja -C "$build" src/access/viraccessapicheck.h >/dev/null

mkdir -p "$out/obj"
export PKG_CONFIG_PATH="$nde_prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
for f in node_device_driver.c node_device_udev.c; do
    # The compiler command of the ported build for this file, minus its
    # output options; run from the build directory as ninja would.
    cmd=$(python3 - "$build/compile_commands.json" "$f" <<'EOF'
import json, shlex, sys
entries = json.load(open(sys.argv[1]))
for e in entries:
    if e["file"].endswith("src/node_device/" + sys.argv[2]) and "nodedev_impl" in e["output"]:
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
        print(shlex.join(keep))
        break
EOF
)
    [ -n "$cmd" ] || { echo "no compile command for $f in $build" >&2; exit 1; }
    src=$(python3 -c 'import json,sys; print(next(e["file"] for e in json.load(open(sys.argv[1])) if e["file"].endswith("src/node_device/"+sys.argv[2]) and "nodedev_impl" in e["output"]))' "$build/compile_commands.json" "$f")
    (cd "$build" && eval "$cmd" -c "\"$src\"" -o "\"$out/obj/${f%.c}.o\"")
done

# Linked to the installed libvirt.so.0 (not the build tree's): every
# LIBVIRT_PRIVATE_9.0.0 symbol must resolve there (-z defs checks it).
cc -shared -o "$out/libvirt_driver_nodedev.so" "$out/obj/node_device_driver.o" "$out/obj/node_device_udev.o" \
    "$libvirt_so" \
    $(pkg-config --libs glib-2.0 gobject-2.0 gio-2.0 gio-unix-2.0 libxml-2.0 pciaccess libudev nodedev-events) \
    -Wl,-z,nodelete,-z,defs,-z,relro,-z,now -Wl,-rpath,'$ORIGIN'
cp -aL "$nde_prefix"/lib/libnodedev_events.so.0 "$out/"
log "ready: $out/libvirt_driver_nodedev.so (for /usr/sbin/libvirtd $have)"
