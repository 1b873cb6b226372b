#!/bin/bash
# Check 7a (libvirt 11.3, the seed's defect "ENOBUFS ends hotplug tracking
# and spins the main loop"): stock 11.3's udev thread tolerates only
# EAGAIN/EWOULDBLOCK/EINVAL from the monitor; on ENOBUFS (its receive
# buffer overflowed) it exits, while the fd watch stays registered, so the
# main loop wakes for ever on a readable socket nobody reads, and no later
# device is seen. The ported driver resynchronises and goes on.
#
# In a private net + mount + pid namespace (sysfs remounted, private /run
# with /run/udev/control, no udevd), for each flavour in turn: the daemon
# and a `virsh nodedev-event` listener run; the daemon is stopped
# (SIGSTOP) while PAIRS add/remove pairs of padded SCSI generic messages
# are injected -- far more than its 128 MiB receive buffer holds, so the
# kernel drops messages for its socket and its next receive fails with
# ENOBUFS (the drops are read from /proc/net/netlink, so the overflow is
# a fact, not a hope) -- then continued (SIGCONT). Once its event stream
# is quiet, its CPU use over 3 s of idling is measured, and a probe device
# is added and removed.
#
# The defect: the probe's events are not seen, or the idle daemon uses
# more than 20 % of a core (an idle daemon uses ~0; stock's spinning main
# loop got 40 % on a busy machine, 100 % on a quiet one). Passes when stock
# shows it and ported does not
# (ported must also list exactly what a fresh daemon lists).
#
# Environment: PAIRS (100000), PAD (1000 bytes per message).
. "$(dirname "$0")/lib-nodedev.sh"
nde_only_for 11.3
nde_enter_namespace "$@"

pairs=${PAIRS:-100000}
pad=${PAD:-1000}
out="$NDE_CHECK_OUT"
rm -rf "${out:?}"/*
mkdir -p "$out"
nde_namespace_setup
nde_fake_udev_control
inject="$out/uevent-inject"
nde_build_injector "$inject"

# Messages the kernel dropped for uevent sockets (protocol 15) of this
# network namespace, summed.
netlink_drops() {
    awk '$2 == 15 { d += $9 } END { print d + 0 }' /proc/net/netlink
}

# What sysfs has: the list of a freshly started daemon.
nde_start_daemon stock "$out/fresh"
nde_virsh stock nodedev-list | sed '/^$/d' | sort > "$out/sysfs-list.txt"
nde_stop_daemon

overflow() {
    local flavour=$1 dir="$out/$1" i
    mkdir -p "$dir"
    nde_start_daemon "$flavour" "$dir"
    local pid=$NDE_DAEMON_PID
    nde_start_listener "$flavour" "$dir/events.txt"
    for i in $(seq 100); do
        "$inject" --action add --count 1 --prefix "hello$i-" > /dev/null
        sleep 0.1
        grep -q "scsi_generic_hello" "$dir/events.txt" && break
    done
    grep -q "scsi_generic_hello" "$dir/events.txt" || nde_fail "$flavour: the listener sees no event"

    local d0 d1
    d0=$(netlink_drops)
    kill -STOP "$pid"
    "$inject" --action pairs --count "$pairs" --prefix ovf --pad "$pad" > "$dir/inject.txt"
    d1=$(netlink_drops)
    kill -CONT "$pid"
    nde_wait_quiet "$dir/events.txt" 5 600

    local c0 c1 idle
    c0=$(nde_cpu_s "$pid"); sleep 3; c1=$(nde_cpu_s "$pid")
    idle=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.0f", (b - a) * 100 / 3 }')

    "$inject" --action pairs --count 1 --prefix probe > /dev/null
    local seen=no
    for i in $(seq 100); do
        if grep -q "node device scsi_generic_probe0: Created" "$dir/events.txt" &&
           grep -q "node device scsi_generic_probe0: Deleted" "$dir/events.txt"; then
            seen=yes; break
        fi
        sleep 0.1
    done
    nde_virsh "$flavour" nodedev-list | sed '/^$/d' | sort > "$dir/list.txt" || true
    local equal=no
    diff -q "$dir/list.txt" "$out/sysfs-list.txt" > /dev/null && equal=yes
    nde_stop_listener
    nde_stop_daemon "$pid"
    local enobufs; enobufs=$(grep -c "No buffer space available" "$dir/libvirtd.log" || true)
    echo "$flavour $((pairs * 2)) $((d1 - d0)) $enobufs $idle $seen $equal" > "$dir/result.txt"
}

for flavour in stock ported; do
    overflow "$flavour"
    nde_say "$(cat "$out/$flavour/result.txt")"
done

{
    echo "ENOBUFS: $((pairs * 2)) messages ($pad B of padding) injected while the daemon was stopped"
    printf '%-7s %9s %14s %16s %14s %11s %13s\n' flavour injected "kernel drops" "ENOBUFS logged" "idle CPU (%)" "probe seen" "list = sysfs"
    for flavour in stock ported; do
        read -r f n drops enobufs idle seen equal < "$out/$flavour/result.txt"
        printf '%-7s %9s %14s %16s %14s %11s %13s\n' "$f" "$n" "$drops" "$enobufs" "$idle" "$seen" "$equal"
    done
} > "$out/summary.txt"
sed 's/^/summary: /' "$out/summary.txt"

status=0
verdict() {
    local f n drops enobufs idle seen equal
    read -r f n drops enobufs idle seen equal < "$out/$1/result.txt"
    [ "$drops" -gt 0 ] || { echo "FAIL: the kernel dropped nothing for $1: no overflow, nothing shown" >&2; status=1; }
    if [ "$seen" = no ] || [ "$idle" -gt 20 ]; then echo yes
    elif [ "$1" = ported ] && [ "$equal" = no ]; then echo yes
    else echo no; fi
}
s=$(verdict stock); p=$(verdict ported)
nde_defect_verdict "after ENOBUFS no later device is seen, or the idle daemon spins" "$s" "$p" || status=1
[ $status = 0 ] && echo "PASS check 7a"
exit $status
