#!/bin/bash
# Check 7b (libvirt 11.3, the seed's defect "queued events' udev_device
# references leak at shutdown"): stock 11.3 queues each received device as
# a job of its one-worker virThreadPool; at shutdown virThreadPoolDrain
# frees only the pool's job wrappers, so every event still queued -- the
# nodeDeviceEvent and the udev_device reference it holds -- is lost. The
# ported driver releases every queued event exactly once.
#
# In a private net + mount + pid namespace (sysfs remounted, private /run
# with /run/udev/control, no udevd), each flavour's daemon runs under
# valgrind (memcheck) with a `virsh nodedev-event` listener; ADDS SCSI
# generic adds are injected at once, and SIGTERM follows as soon as the
# daemon has read them all from its socket (its receive queue in
# /proc/net/netlink is empty) while the listener has seen fewer than
# ADDS: under valgrind the one worker is far slower than the receiving
# thread, so most events are still queued then. (SIGTERM while stock's
# udev thread is still reading makes its shutdown deadlock -- it joins
# that thread holding the lock the thread takes -- and libvirtd then
# forces its exit after 30 s without any cleanup, so nothing would be
# reported lost: that is a defect of its own, not this one.)
# Counted: memcheck's loss records (definite and indirect) whose
# allocation stack goes through receiving a device from the udev monitor
# (udev_monitor_receive_device, or the node-device driver's event
# submission) -- the events left in the queue.
#
# The defect: at least one such record. Passes when stock shows it and
# ported does not (ported must also exit 0 with no memcheck error).
#
# Environment: ADDS (3000).
. "$(dirname "$0")/lib-nodedev.sh"
nde_only_for 11.3
nde_enter_namespace "$@"

adds=${ADDS:-3000}
out="$NDE_CHECK_OUT"
rm -rf "${out:?}"/*
mkdir -p "$out"
nde_namespace_setup
nde_fake_udev_control
inject="$out/uevent-inject"
nde_build_injector "$inject"
command -v valgrind > /dev/null || nde_fail "valgrind is not installed (libvirt/tests/run.sh installs it)"

# Bytes waiting in the uevent sockets (protocol 15) of this network
# namespace: the daemon's monitor is the only one.
socket_bytes() {
    awk '$2 == 15 { b += $5 } END { print b + 0 }' /proc/net/netlink
}

# Loss records of a memcheck log whose stack matches the event path.
records_through_queue() {
    awk '/are (definitely|indirectly) lost in loss record/ { inrec = 1; rec = $0; next }
         inrec && /^==[0-9]+== *$/ { if (rec ~ /udev_monitor_receive_device|nodeDeviceEventSubmit|udevEventHandleThread|nde_monitor|nodedev_events/) n++; inrec = 0; next }
         inrec { rec = rec "\n" $0 }
         END { print n + 0 }' "$1"
}

run_flavour() {
    local flavour=$1 dir="$out/$1" i
    local tree; tree=$(nde_tree "$flavour")
    mkdir -p "$dir/drivers"
    rm -f /run/libvirt/libvirt-sock
    ln -sf "$(nde_module "$flavour")" "$dir/drivers/libvirt_driver_nodedev.so"
    printf '%s\n' 'unix_sock_dir = "/run/libvirt"' 'auth_unix_rw = "none"' 'auth_unix_ro = "none"' \
        "log_outputs = \"3:file:$dir/libvirtd.log\"" > "$dir/libvirtd.conf"
    LD_LIBRARY_PATH="$(nde_libpath "$flavour")" LIBVIRT_DRIVER_DIR="$dir/drivers" \
        valgrind --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite \
        --num-callers=40 --log-file="$dir/memcheck.txt" \
        "$tree/usr/sbin/libvirtd" -f "$dir/libvirtd.conf" > "$dir/daemon.out" 2>&1 &
    local pid=$!
    for i in $(seq 600); do
        nde_virsh "$flavour" nodedev-list > /dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || nde_fail "$flavour: the daemon died under valgrind"
        sleep 0.2
    done
    nde_start_listener "$flavour" "$dir/events.txt"
    for i in $(seq 100); do
        "$inject" --action add --count 1 --prefix "hello$i-" > /dev/null
        sleep 0.2
        grep -q "scsi_generic_hello" "$dir/events.txt" && break
    done
    "$inject" --action add --count "$adds" --prefix queued > /dev/null
    for i in $(seq 1200); do
        [ "$(socket_bytes)" = 0 ] && break
        sleep 0.05
    done
    local seen; seen=$(grep -c "scsi_generic_queued" "$dir/events.txt" || true)
    kill -TERM "$pid"
    local rc=0 waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
        sleep 0.5; waited=$((waited + 1))
        [ $waited -ge 240 ] && { kill -KILL "$pid"; rc=124; break; }
    done
    [ $rc = 124 ] || { wait "$pid" || rc=$?; }
    nde_stop_listener
    local leaks errors
    leaks=$(records_through_queue "$dir/memcheck.txt")
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$dir/memcheck.txt" | tail -1)
    echo "$flavour $adds $seen $rc $leaks ${errors:-?}" > "$dir/result.txt"
}

for flavour in stock ported; do
    run_flavour "$flavour"
    nde_say "$(cat "$out/$flavour/result.txt")"
done

{
    echo "events queued at shutdown: $adds adds injected, SIGTERM once the daemon had read them all (daemons under memcheck)"
    printf '%-7s %9s %22s %10s %26s %16s\n' flavour injected "delivered at SIGTERM" "exit" "loss records via the queue" "memcheck errors"
    for flavour in stock ported; do
        read -r f n seen rc leaks errors < "$out/$flavour/result.txt"
        printf '%-7s %9s %22s %10s %26s %16s\n' "$f" "$n" "$seen" "$rc" "$leaks" "$errors"
    done
} > "$out/summary.txt"
sed 's/^/summary: /' "$out/summary.txt"
echo "--- stock's first such record"
awk '/are (definitely|indirectly) lost in loss record/ { inrec = 1; rec = $0; next }
     inrec && /^==[0-9]+== *$/ { if (rec ~ /udev_monitor_receive_device|nodeDeviceEventSubmit|udevEventHandleThread/) { print rec; exit } inrec = 0; next }
     inrec { rec = rec "\n" $0 }' "$out/stock/memcheck.txt" | head -30

status=0
read -r _ _ _ src sleaks _ < "$out/stock/result.txt"
read -r _ _ _ prc pleaks perrors < "$out/ported/result.txt"
[ "$src" = 124 ] && { echo "FAIL: stock did not exit under valgrind: no leak report"; status=1; }
[ "$prc" = 0 ] || { echo "FAIL: ported exited $prc"; status=1; }
[ "$perrors" = 0 ] || { echo "FAIL: memcheck found $perrors errors in ported"; status=1; }
nde_defect_verdict "events queued at shutdown are lost with their udev_device" \
    "$([ "$sleaks" -gt 0 ] && echo yes || echo no)" "$([ "$pleaks" -gt 0 ] && echo yes || echo no)" || status=1
[ $status = 0 ] && echo "PASS check 7b"
exit $status
