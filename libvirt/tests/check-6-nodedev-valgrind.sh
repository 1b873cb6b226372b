#!/bin/bash
# The ported node-device driver under valgrind (memcheck): the ported
# libvirtd (only the nodedev driver, private net + mount + pid namespace,
# /run/udev/control present, no udevd) enumerates, a `virsh nodedev-event`
# listener runs while injected udev-group messages add and remove devices
# (PAIRS add/remove pairs, then ADDS adds), and SIGTERM stops it. Passes when
# the listener saw every event, the daemon exited 0, and memcheck reports no
# error and no definitely lost block (a "possibly lost" block is glib's
# D-Bus thread, started by libvirtd itself).
#
# Environment: PAIRS (300), ADDS (300).
. "$(dirname "$0")/lib-nodedev.sh"
nde_enter_namespace "$@"

pairs=${PAIRS:-300}
adds=${ADDS:-300}
out="$NDE_CHECK_OUT"
rm -rf "${out:?}"/*
mkdir -p "$out/drivers"
nde_namespace_setup
nde_fake_udev_control
inject="$out/uevent-inject"
nde_build_injector "$inject"
command -v valgrind > /dev/null || nde_fail "valgrind is not installed (libvirt/tests/run.sh installs it)"

tree=$NDE_PORTED_TREE
ln -sf "$(nde_module ported)" "$out/drivers/libvirt_driver_nodedev.so"
printf '%s\n' 'unix_sock_dir = "/run/libvirt"' 'auth_unix_rw = "none"' 'auth_unix_ro = "none"' \
    "log_outputs = \"3:file:$out/libvirtd.log\"" > "$out/libvirtd.conf"
LD_LIBRARY_PATH="$tree/$nde_libdir" LIBVIRT_DRIVER_DIR="$out/drivers" \
    valgrind --leak-check=full --errors-for-leak-kinds=definite --num-callers=30 --log-file="$out/memcheck.txt" \
    "$tree/usr/sbin/libvirtd" -f "$out/libvirtd.conf" > "$out/daemon.out" 2>&1 &
pid=$!
for i in $(seq 600); do
    nde_virsh ported nodedev-list > /dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || nde_fail "the daemon died under valgrind"
    sleep 0.2
done
stdbuf -oL env LD_LIBRARY_PATH="$tree/$nde_libdir" "$tree/usr/bin/virsh" -q -c "$NDE_URI" \
    nodedev-event --event lifecycle --loop > "$out/events.txt" 2>&1 &
listener=$!
sleep 2
"$inject" --action pairs --count "$pairs" --prefix vgpair > /dev/null
"$inject" --action add --count "$adds" --prefix vgadd > /dev/null
want=$((pairs * 2 + adds))
for i in $(seq 300); do
    [ "$(grep -c "scsi_generic_vg" "$out/events.txt" || true)" -ge "$want" ] && break
    sleep 0.2
done
got=$(grep -c "scsi_generic_vg" "$out/events.txt" || true)
kill -TERM "$listener" 2>/dev/null || true
wait "$listener" 2>/dev/null || true
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?

definite=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$out/memcheck.txt" | tr -d ,)
errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$out/memcheck.txt")
echo "summary: ported daemon under memcheck: $got of $want events seen, exit $rc, ${errors:-?} errors, ${definite:-0} bytes definitely lost"
status=0
[ "$got" -ge "$want" ] || { echo "FAIL: the listener saw $got of $want events"; status=1; }
[ "$rc" = 0 ] || { echo "FAIL: the daemon exited $rc"; status=1; }
[ "${errors:-1}" = 0 ] || { echo "FAIL: memcheck errors:"; grep -A20 "Invalid\|uninitialised" "$out/memcheck.txt" | head -60; status=1; }
[ "${definite:-0}" = 0 ] || { echo "FAIL: definitely lost blocks:"; grep -B2 -A25 "definitely lost in" "$out/memcheck.txt" | head -80; status=1; }
[ $status = 0 ] && echo "PASS check 6"
exit $status
