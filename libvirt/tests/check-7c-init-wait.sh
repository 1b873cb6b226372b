#!/bin/bash
# Check 7c (libvirt 11.3, the seed's defect "a stop before INIT runs leaves
# nodeDeviceInitWait blocked"): stock 11.3 submits its initial enumeration
# (INIT) as the first job of its one-worker pool and returns; node-device
# API calls wait in nodeDeviceInitWait until INIT has run. If the daemon is
# stopped before the worker has taken INIT, virThreadPoolStop makes the
# worker quit without it and virThreadPoolDrain drops it: the waiting
# callers are never released, so the daemon's own shutdown cannot finish
# (libvirtd gives up after its 30 s and logs "Make forcefull daemon
# shutdown") and the clients get no answer. The ported driver releases
# them with an error.
#
# "Before the worker has taken INIT" is made to last: thread-freeze.c stops
# the driver's worker thread alone (ptrace) as soon as it exists. Stock's
# worker exists before the driver submits INIT, so it is frozen before
# INIT. The ported driver's worker (the library's) is started with INIT
# already queued, so it is frozen before INIT has completed: VETHS veth
# pairs make the enumeration long enough; a ported driver must release the
# waiting callers either way. Then, in a private net + mount + pid namespace
# (sysfs remounted, private /run): a `virsh nodedev-list` client connects
# and waits for the enumeration (if it gets a list, the freeze came too
# late: tried again, up to 5 times; it is waiting once one of the daemon's
# RPC workers stays busy, as virt-admin's server-threadpool-info shows);
# SIGTERM goes to the daemon; 2 s later
# the worker is let go (the stop has happened: the pool is stopped); the
# daemon is given 60 s to exit.
#
# The defect: the driver never released the waiting caller (no error from
# nodeDeviceInitWait in the daemon's log before it exited; the client then
# fails on the closed connection, or was still waiting when the daemon was
# killed), or the daemon logged a forced shutdown. Passes when stock shows
# it and ported does not (ported: the caller failed with an error, the
# daemon exited by itself). The client's own output cannot tell the two
# apart: libvirtd closes its clients' connections while it shuts down, so
# the error reply is lost in both.
#
# The worker's thread name: stock "nodev-device-ev" (libvirt's
# "nodev-device-event" cut to 15 bytes); ported NDE_PORTED_WORKER (the
# library's events worker, "nodedev-ev").
#
# Environment: VETHS (2000 pairs).
. "$(dirname "$0")/lib-nodedev.sh"
nde_only_for 11.3
nde_enter_namespace "$@"

out="$NDE_CHECK_OUT"
rm -rf "${out:?}"/*
mkdir -p "$out"
nde_namespace_setup
for i in $(seq 0 $(( ${VETHS:-2000} - 1 ))); do
    echo "link add vi${i}a type veth peer name vi${i}b"
done > "$out/veths.batch"
ip -batch "$out/veths.batch"
freeze="$out/thread-freeze"
cc -std=c11 -O2 -Wall -Wextra -Werror "$nde_root/libvirt/tests/thread-freeze.c" -o "$freeze"

worker_name() {
    case "$1" in
        stock) echo nodev-device-ev ;;
        ported) echo "${NDE_PORTED_WORKER:-nodedev-ev}" ;;
    esac
}

# One attempt; writes $dir/result.txt, or returns 1 when the freeze came
# too late (the client got its list).
attempt() {
    local flavour=$1 dir=$2 i
    local tree; tree=$(nde_tree "$flavour")
    rm -rf "$dir"; mkdir -p "$dir/drivers"
    rm -f /run/libvirt/libvirt-sock
    ln -sf "$(nde_module "$flavour")" "$dir/drivers/libvirt_driver_nodedev.so"
    local lib
    for lib in "$(dirname "$(nde_module "$flavour")")"/libnodedev_events.so.*; do
        [ -e "$lib" ] && ln -sf "$lib" "$dir/drivers/"
    done
    printf '%s\n' 'unix_sock_dir = "/run/libvirt"' 'auth_unix_rw = "none"' 'auth_unix_ro = "none"' \
        "log_outputs = \"3:file:$dir/libvirtd.log\"" > "$dir/libvirtd.conf"
    LD_LIBRARY_PATH="$(nde_libpath "$flavour")" LIBVIRT_DRIVER_DIR="$dir/drivers" \
        "$tree/usr/sbin/libvirtd" -f "$dir/libvirtd.conf" > "$dir/daemon.out" 2>&1 &
    local pid=$!
    # The freezer keeps the worker stopped while its stdin (a FIFO held
    # open by this shell on fd 8) is open.
    mkfifo "$dir/release"
    "$freeze" "$pid" "$(worker_name "$flavour")" 30 < "$dir/release" > "$dir/freeze.out" 2>&1 &
    local freezer=$!
    exec 8> "$dir/release"
    for i in $(seq 300); do
        grep -q '^frozen' "$dir/freeze.out" && break
        kill -0 "$freezer" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q '^frozen' "$dir/freeze.out"; then
        exec 8>&-
        kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
        nde_fail "$flavour: the worker thread $(worker_name "$flavour") was not found: $(cat "$dir/freeze.out")"
    fi
    for i in $(seq 600); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.05; done
    # (8>&-: no other process may hold the FIFO open, or closing it here
    # would not let the worker go.)
    LD_LIBRARY_PATH="$(nde_libpath "$flavour")" "$tree/usr/bin/virsh" -q -c "$NDE_URI" nodedev-list \
        > "$dir/client.out" 2>&1 8>&- &
    local client=$!
    # The client's call is waiting in nodeDeviceInitWait once it has been
    # connected (ss sees virsh's socket) for 1 s and has no answer yet.
    # (virt-admin's busy workers would tell it too, but the library's pool
    # counts its workers otherwise.)
    local busy=no
    for i in $(seq 200); do
        ss -xp 2>/dev/null | grep -q '"virsh"' && { busy=yes; break; }
        kill -0 "$client" 2>/dev/null || break
        sleep 0.05
    done
    sleep 1
    if [ $busy = no ] || ! kill -0 "$client" 2>/dev/null; then
        # The client has its answer: INIT ran before the freeze.
        exec 8>&-
        wait "$freezer" 2>/dev/null || true
        nde_stop_daemon "$pid"
        wait "$client" 2>/dev/null || true
        return 1
    fi
    kill -TERM "$pid"
    sleep 2
    exec 8>&-                      # let the worker go
    wait "$freezer" 2>/dev/null || true
    local t=0 killed=no
    while kill -0 "$pid" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
        sleep 0.5; t=$((t + 1))
        [ $t -ge 120 ] && { kill -KILL "$pid"; killed=yes; break; }
    done
    wait "$pid" 2>/dev/null || true
    local client_state=answered crc=0
    if kill -0 "$client" 2>/dev/null; then
        client_state=still-waiting
        kill -KILL "$client" 2>/dev/null || true
    fi
    wait "$client" || crc=$?
    local forced; forced=$(grep -c "Make forcefull daemon shutdown" "$dir/libvirtd.log" || true)
    # A caller released by the driver fails in nodeDeviceInitWait, which
    # logs the error (the reply itself may be lost: the daemon closes its
    # clients' connections while it shuts down).
    local released; released=$(grep -c "error : nodeDeviceInitWait" "$dir/libvirtd.log" || true)
    # An answer from the driver is an error reply; a closed connection is
    # no answer.
    if [ "$client_state" = answered ] && grep -qi "end of file\|connection reset\|broken pipe\|closed" "$dir/client.out"; then
        client_state=connection-closed
    fi
    echo "$flavour $client_state $crc $forced $killed $released" > "$dir/result.txt"
}

run_flavour() {
    local flavour=$1 n
    for n in 1 2 3 4 5; do
        if attempt "$flavour" "$out/$flavour-$n"; then
            cp "$out/$flavour-$n/result.txt" "$out/$flavour.result"
            echo "$n" > "$out/$flavour.attempts"
            return 0
        fi
        nde_say "$flavour: attempt $n: the client had its list before the freeze; again"
    done
    nde_fail "$flavour: in 5 attempts the worker was never frozen before the enumeration"
}

for flavour in stock ported; do
    run_flavour "$flavour"
    nde_say "$(cat "$out/$flavour.result")"
done

{
    echo "stop before INIT runs: the worker frozen before INIT, a client waiting, SIGTERM, the worker let go"
    printf '%-7s %9s %18s %10s %16s %14s %16s\n' flavour attempts "waiting client" "client rc" "forced shutdown" "daemon killed" "caller released"
    for flavour in stock ported; do
        read -r f state crc forced killed released < "$out/$flavour.result"
        printf '%-7s %9s %18s %10s %16s %14s %16s\n' "$f" "$(cat "$out/$flavour.attempts")" "$state" "$crc" "$forced" "$killed" "$released"
    done
} > "$out/summary.txt"
sed 's/^/summary: /' "$out/summary.txt"
for flavour in stock ported; do
    echo "--- $flavour client:"; cat "$out/$flavour-$(cat "$out/$flavour.attempts")/client.out"
done

# Blocked: the driver never released the waiting caller (no error from
# nodeDeviceInitWait), it had no answer, the daemon had to force its
# shutdown, or was killed.
blocked() {
    local f state crc forced killed released
    read -r f state crc forced killed released < "$out/$1.result"
    if [ "$released" = 0 ] || [ "$forced" -gt 0 ] || [ "$killed" = yes ] ||
       { [ "$state" != answered ] && [ "$state" != connection-closed ]; }; then echo yes; else echo no; fi
}
nde_defect_verdict "a stop before INIT runs leaves the callers of nodeDeviceInitWait blocked" \
    "$(blocked stock)" "$(blocked ported)" && echo "PASS check 7c"
