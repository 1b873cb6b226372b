#!/bin/bash
# Check 5 of issue 11: overflow and shutdown, stock vs ported in one run.
# In a private net + mount + pid namespace (sysfs remounted, a private
# /run with /run/udev/control and no udevd), only the nodedev driver:
#
# A. Overflow. Fresh daemon + `virsh nodedev-event` listener; N add/remove
#    pairs of virtual net devices are injected on netlink group 2 as fast as
#    the kernel takes them (2N events; the 128 MiB receive buffer
#    overflows: ENOBUFS). Once the daemon is quiet again, a probe device is
#    added and removed: its two events must be seen, and `nodedev-list`
#    must equal the list of a freshly started daemon (what sysfs has). The
#    daemon's CPU while idle afterwards is reported (stock's main loop
#    spins once its udev thread has died).
# B. Shutdown during enumeration. 2000 veth pairs (4000 net devices); the
#    daemon is started and SIGTERM is sent 50 ms after its socket appeared
#    (mode at50ms), or as soon as a `virsh nodedev-list` client is connected
#    and waiting for the enumeration (mode client). Reported: time from
#    SIGTERM to the daemon's exit, and when and how the waiting client
#    returned. Durations are reported, never asserted.
#
# Fails when the ported daemon misses the probe or its list differs from
# sysfs after the overflow, or when a daemon does not exit.
#
#   check-5-overflow-shutdown.sh [--pairs N] [--pad BYTES] [--veths N] [--reps N] [--only A|B]
#
# --pad: size of an extra property in each injected message (udevd's own
# messages carry 1 KB or more of properties; small ones fit 400 000 times
# into the 128 MiB receive buffer and nothing overflows).
. "$(dirname "$0")/lib-nodedev.sh"
nde_enter_namespace "$@"

pairs=200000
pad=1000
veths=2000
reps=3
only=
while [ $# -gt 0 ]; do
    case "$1" in
        --pairs) pairs=$2; shift 2 ;;
        --pad) pad=$2; shift 2 ;;
        --veths) veths=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        *) echo "usage: $0 [--pairs N] [--pad BYTES] [--veths N] [--reps N] [--only A|B]" >&2; exit 2 ;;
    esac
done

out="$NDE_CHECK_OUT"
rm -rf "${out:?}"/*
mkdir -p "$out"
nde_namespace_setup
nde_fake_udev_control
inject="$out/uevent-inject"
nde_build_injector "$inject"
status=0

# Waits until a file has not grown for $2 seconds (at most $3 seconds).
quiet_file() {
    local f=$1 quiet=$2 limit=$3 last=-1 same=0 size t=0
    while [ "$t" -lt $((limit * 10)) ]; do
        size=$(stat -c %s "$f")
        if [ "$size" = "$last" ]; then
            same=$((same + 1))
            [ $same -ge $((quiet * 10)) ] && return 0
        else
            same=0
        fi
        last=$size
        sleep 0.1
        t=$((t + 1))
    done
}

# ---------------------------------------------------------------- A. overflow
fresh_list() {
    nde_start_daemon stock "$out/fresh"
    nde_virsh stock nodedev-list | sed '/^$/d' | sort > "$out/sysfs-list.txt"
    nde_stop_daemon
}

overflow() {
    local flavour=$1 dir="$out/overflow-$1"
    mkdir -p "$dir"
    nde_start_daemon "$flavour" "$dir"
    local pid=$NDE_DAEMON_PID
    stdbuf -oL env LD_LIBRARY_PATH="$(nde_tree "$flavour")/$nde_libdir" \
        "$(nde_tree "$flavour")/usr/bin/virsh" -q -c "$NDE_URI" \
        nodedev-event --event lifecycle --loop > "$dir/events.txt" 2>&1 &
    local listener=$!
    local i
    for i in $(seq 100); do
        "$inject" --action pairs --count 1 --prefix "hello$i-" > /dev/null
        sleep 0.1
        grep -q "scsi_generic_hello" "$dir/events.txt" && break
    done

    "$inject" --action pairs --count "$pairs" --prefix ovf --pad "$pad" > "$dir/inject.txt"
    quiet_file "$dir/events.txt" 5 600
    local c0 c1
    c0=$(nde_cpu_s "$pid"); sleep 2; c1=$(nde_cpu_s "$pid")
    local idle; idle=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.0f", (b - a) * 100 / 2 }')

    "$inject" --action pairs --count 1 --prefix probe > /dev/null
    local seen=no
    for i in $(seq 100); do
        if grep -q "node device scsi_generic_probe0: Created" "$dir/events.txt" &&
           grep -q "node device scsi_generic_probe0: Deleted" "$dir/events.txt"; then
            seen=yes; break
        fi
        sleep 0.1
    done
    nde_virsh "$flavour" nodedev-list | sed '/^$/d' | sort > "$dir/list.txt"
    local equal=no
    diff -q "$dir/list.txt" "$out/sysfs-list.txt" > /dev/null && equal=yes
    kill -TERM "$listener" 2>/dev/null || true
    wait "$listener" 2>/dev/null || true
    nde_stop_daemon "$pid"; local ms=$NDE_STOP_MS
    local overflows resyncs
    overflows=$(grep -c "No buffer space available\|overflowed" "$dir/libvirtd.log" || true)
    resyncs=$(grep -c "re-enumerating node devices" "$dir/libvirtd.log" || true)
    local extra; extra=$(comm -23 "$dir/list.txt" "$out/sysfs-list.txt" | wc -l)
    echo "$flavour $((pairs * 2)) $overflows $resyncs $seen $equal $extra $idle $ms" > "$dir/result.txt"
}

# ------------------------------------------- B. SIGTERM during enumeration
make_veths() {
    local i
    for i in $(seq 0 $((veths - 1))); do
        echo "link add vq${i}a type veth peer name vq${i}b"
    done > "$out/veths.batch"
    ip -batch "$out/veths.batch"
}

# Milliseconds since the epoch, without a fork (bash's EPOCHREALTIME).
now_ms() { local us=${EPOCHREALTIME/./}; echo $((us / 1000)); }

# $3 = client: a virsh client is connected and waiting for the enumeration
# when SIGTERM comes (as soon as it is connected, ~100-200 ms in); otherwise
# SIGTERM comes 50 ms after the daemon's socket appeared (the driver starts
# enumerating then).
sigterm_during_enumeration() {
    local flavour=$1 rep=$2 mode=$3 dir="$out/sigterm-$1-$2-$3"
    mkdir -p "$dir/drivers"
    local tree; tree=$(nde_tree "$flavour")
    rm -f /run/libvirt/libvirt-sock
    ln -sf "$(nde_module "$flavour")" "$dir/drivers/libvirt_driver_nodedev.so"
    printf '%s\n' 'unix_sock_dir = "/run/libvirt"' 'auth_unix_rw = "none"' 'auth_unix_ro = "none"' \
        "log_outputs = \"3:file:$dir/libvirtd.log\"" > "$dir/libvirtd.conf"
    LD_LIBRARY_PATH="$tree/$nde_libdir" LIBVIRT_DRIVER_DIR="$dir/drivers" \
        "$tree/usr/sbin/libvirtd" -f "$dir/libvirtd.conf" -p "/run/libvirt/libvirtd-$flavour.pid" \
        > "$dir/daemon.out" 2>&1 &
    local pid=$!
    local i
    for i in $(seq 2000); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.005; done
    local tsock; tsock=$(now_ms)
    # A client that waits for the enumeration (nodeDeviceInitWait), connected
    # before the signal.
    local client=0 waiting=no
    if [ "$mode" = client ]; then
        LD_LIBRARY_PATH="$tree/$nde_libdir" "$tree/usr/bin/virsh" -q -c "$NDE_URI" nodedev-list \
            > "$dir/client.out" 2>&1 &
        client=$!
        for i in $(seq 1000); do
            ss -xp 2>/dev/null | grep -q '"virsh"' && break
            sleep 0.002
        done
        kill -0 "$client" 2>/dev/null && waiting=yes
    fi
    while [ $(( $(now_ms) - tsock )) -lt 50 ]; do sleep 0.002; done
    local tterm; tterm=$(now_ms)
    kill -TERM "$pid"
    local texit=0 tclient=0 t
    while :; do
        t=$(now_ms)
        if [ "$texit" = 0 ] && ! kill -0 "$pid" 2>/dev/null; then texit=$t; fi
        if [ "$tclient" = 0 ] && { [ "$client" = 0 ] || ! kill -0 "$client" 2>/dev/null; }; then tclient=$t; fi
        [ "$texit" != 0 ] && [ "$tclient" != 0 ] && break
        if [ $((t - tterm)) -gt 120000 ]; then
            kill -KILL "$pid" 2>/dev/null || true
            [ "$client" = 0 ] || kill -KILL "$client" 2>/dev/null || true
            [ "$texit" = 0 ] && texit=$t
            [ "$tclient" = 0 ] && tclient=$t
            break
        fi
        sleep 0.002
    done
    wait "$pid" 2>/dev/null || true
    local crc=- cms=-
    if [ "$client" != 0 ]; then
        crc=0; wait "$client" 2>/dev/null || crc=$?
        cms=$((tclient - tterm))
    fi
    echo "$flavour $rep $mode $((tterm - tsock)) $waiting $((texit - tterm)) $cms $crc" \
        > "$dir/result.txt"
}

if [ "$only" != B ]; then
    nde_say "A. overflow: $pairs add/remove pairs"
    fresh_list
    for flavour in stock ported; do
        overflow "$flavour"
        nde_say "$(cat "$out/overflow-$flavour/result.txt")"
    done
fi

if [ "$only" != A ]; then
    nde_say "B. SIGTERM 50 ms into the enumeration of $((veths * 2)) veth devices"
    make_veths
    for rep in $(seq "$reps"); do
        for mode in at50ms client; do
            for flavour in stock ported; do
                sigterm_during_enumeration "$flavour" "$rep" "$mode"
                nde_say "$(cat "$out/sigterm-$flavour-$rep-$mode/result.txt")"
            done
        done
    done
fi

{
    if [ "$only" != B ]; then
        echo "A. overflow: $((pairs * 2)) injected events (add/remove pairs, $pad B of padding), $(date -u '+%Y-%m-%d %H:%M UTC')"
        printf '%-7s %8s %10s %8s %12s %14s %14s %14s\n' flavour events "overflows" resyncs "probe seen" "list = sysfs" "stale devices" "idle CPU (%)"
        for flavour in stock ported; do
            read -r f n ovf rs seen eq extra idle ms < "$out/overflow-$flavour/result.txt"
            printf '%-7s %8s %10s %8s %12s %14s %14s %14s\n' "$f" "$n" "$ovf" "$rs" "$seen" "$eq" "$extra" "$idle"
        done
    fi
    if [ "$only" != A ]; then
        echo "B. SIGTERM during the enumeration of $((veths * 2)) veth devices"
        printf '%-7s %4s %7s %14s %13s %14s %16s %10s\n' flavour rep mode "SIGTERM at ms" "client waits" "exit after ms" "client after ms" "client rc"
        for rep in $(seq "$reps"); do
            for mode in at50ms client; do
                for flavour in stock ported; do
                    read -r f r m at w ex cms crc < "$out/sigterm-$flavour-$rep-$mode/result.txt"
                    printf '%-7s %4s %7s %14s %13s %14s %16s %10s\n' "$f" "$r" "$m" "$at" "$w" "$ex" "$cms" "$crc"
                done
            done
        done
    fi
} > "$out/summary.txt"
sed 's/^/summary: /' "$out/summary.txt"

if [ "$only" != B ]; then
    read -r _ _ ovf _ seen eq _ _ _ < "$out/overflow-ported/result.txt"
    [ "$seen" = yes ] || { echo "FAIL: ported missed the probe after the overflow"; status=1; }
    [ "$eq" = yes ] || { echo "FAIL: ported list differs from sysfs after the overflow"; diff "$out/overflow-ported/list.txt" "$out/sysfs-list.txt" | head; status=1; }
    [ "$ovf" -gt 0 ] || echo "note: the ported daemon logged no overflow (the storm did not overflow its buffer)"
fi
if [ "$only" != A ]; then
    for rep in $(seq "$reps"); do
        for mode in at50ms client; do
            read -r _ _ _ _ _ ex _ < "$out/sigterm-ported-$rep-$mode/result.txt"
            [ "$ex" -lt 120000 ] || { echo "FAIL: the ported daemon did not exit after SIGTERM (killed)"; status=1; }
        done
    done
fi
[ $status = 0 ] && echo "PASS check 5: the ported daemon kept hotplug tracking through the overflow"
exit $status
