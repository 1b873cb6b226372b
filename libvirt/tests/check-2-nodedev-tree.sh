#!/bin/bash
# Check 2 of issue 11: the ported node-device driver shows what the stock
# one shows. In a private net + mount + pid namespace (sysfs remounted, a
# private /run, a real systemd-udevd with no rules), each daemon in turn
# (only the nodedev driver loaded, stopped by its PID):
#   - `virsh nodedev-list --tree` and `virsh nodedev-dumpxml` of every
#     device, after the initial enumeration;
#   - `virsh nodedev-event --loop` lines (lifecycle and update listeners)
#     while a veth pair with fixed MAC addresses is added, renamed and
#     deleted.
# Stock and ported outputs must be identical. Results: $CHECK_OUT.
. "$(dirname "$0")/lib-nodedev.sh"
nde_enter_namespace "$@"

out="$NDE_CHECK_OUT"
rm -rf "${out:?}"/*
mkdir -p "$out"
nde_namespace_setup
nde_start_udevd
trap 'nde_stop_udevd' EXIT

# Waits until a file has stopped growing for 0.5 s (at most 10 s).
settle_file() {
    local f=$1 last=-1 same=0 size i
    for i in $(seq 200); do
        size=$(stat -c %s "$f")
        if [ "$size" = "$last" ]; then
            same=$((same + 1))
            [ $same -ge 10 ] && return 0
        else
            same=0
        fi
        last=$size
        sleep 0.05
    done
}

run_flavour() {
    local flavour=$1 dir="$out/$1"
    mkdir -p "$dir/xml"
    nde_start_daemon "$flavour" "$dir"
    local pid=$NDE_DAEMON_PID
    grep -o '/[^ ]*\.so[^ ]*' "/proc/$pid/maps" | sort -u > "$dir/maps.txt"

    nde_virsh "$flavour" nodedev-list --tree > "$dir/tree.txt"
    nde_virsh "$flavour" nodedev-list | sed '/^$/d' > "$dir/list.txt"
    while read -r dev; do
        nde_virsh "$flavour" nodedev-dumpxml "$dev" > "$dir/xml/$dev.xml"
    done < "$dir/list.txt"

    stdbuf -oL env LD_LIBRARY_PATH="$(nde_libpath "$flavour")" \
        "$(nde_tree "$flavour")/usr/bin/virsh" -q -c "$NDE_URI" nodedev-event --event lifecycle --loop \
        > "$dir/events-lifecycle.txt" 2>&1 &
    local l1=$!
    stdbuf -oL env LD_LIBRARY_PATH="$(nde_libpath "$flavour")" \
        "$(nde_tree "$flavour")/usr/bin/virsh" -q -c "$NDE_URI" nodedev-event --event update --loop \
        > "$dir/events-update.txt" 2>&1 &
    local l2=$!
    sleep 1   # both listeners registered

    # udevd handles the two ends of a pair in parallel: within one step
    # their events may come in either order, so each step's lines are
    # compared as a set (steps end at the line counts in steps.txt).
    step() {
        "$@"
        udevadm settle -t 10
        settle_file "$dir/events-lifecycle.txt"
        settle_file "$dir/events-update.txt"
        echo "$(wc -l < "$dir/events-lifecycle.txt") $(wc -l < "$dir/events-update.txt") $*" >> "$dir/steps.txt"
    }
    : > "$dir/steps.txt"
    step ip link add vethcheck0 address 52:54:00:00:c2:01 type veth \
        peer name vethcheck1 address 52:54:00:00:c2:02
    step ip link set vethcheck0 name vethrenamed0
    step ip link del vethrenamed0

    kill -TERM "$l1" "$l2" 2>/dev/null || true
    wait "$l1" "$l2" 2>/dev/null || true
    # virsh prints "event loop interrupted" / "events received" on SIGTERM
    sed -i '/^event loop/d; /^events received/d' "$dir/events-lifecycle.txt" "$dir/events-update.txt"
    local from_l=1 from_u=1 nl nu what
    while read -r nl nu what; do
        echo "== $what"
        sed -n "${from_l},${nl}p" "$dir/events-lifecycle.txt" | sort
        sed -n "${from_u},${nu}p" "$dir/events-update.txt" | sort
        from_l=$((nl + 1)); from_u=$((nu + 1))
    done < "$dir/steps.txt" > "$dir/events-by-step.txt"
    nde_stop_daemon "$pid"; local ms=$NDE_STOP_MS
    nde_say "$flavour: $(wc -l < "$dir/list.txt") devices, $(wc -l < "$dir/events-lifecycle.txt") lifecycle and $(wc -l < "$dir/events-update.txt") update events; exited ${ms} ms after SIGTERM"
    grep -v "udevGetDMIData\|/sys/devices/virtual/dmi/id\|End of file while reading data\|: info : " "$dir/libvirtd.log" > "$dir/log-other.txt" || true
}

flavours=(stock ported)
# The ported module in Debian's own daemon, when it was built
# (libvirt/build-module-for-stock.sh).
[ -f "$NDE_MODULE_FOR_STOCK/libvirt_driver_nodedev.so" ] && [ -x "$NDE_DEBIAN_TREE/usr/sbin/libvirtd" ] &&
    flavours+=(debian-ported)
for flavour in "${flavours[@]}"; do
    run_flavour "$flavour"
done

status=0
for flavour in "${flavours[@]:1}"; do
    for f in tree.txt list.txt events-by-step.txt; do
        if ! diff -u "$out/stock/$f" "$out/$flavour/$f" > "$out/diff-$flavour-$f"; then
            echo "FAIL: $f differs (stock vs $flavour):"; cat "$out/diff-$flavour-$f"; status=1
        fi
    done
    if ! diff -ru "$out/stock/xml" "$out/$flavour/xml" > "$out/diff-$flavour-xml"; then
        echo "FAIL: nodedev-dumpxml differs (stock vs $flavour):"; head -50 "$out/diff-$flavour-xml"; status=1
    fi
done
[ -f "$out/debian-ported/maps.txt" ] && ! grep -q libnodedev_events "$out/debian-ported/maps.txt" &&
    { echo "FAIL: Debian's libvirtd did not load the ported module"; status=1; }
grep -q "vethcheck0" "$out/stock/events-lifecycle.txt" || { echo "FAIL: no veth event seen (stock)"; status=1; }
[ -s "$out/ported/log-other.txt" ] && { echo "note: ported daemon log:"; head -20 "$out/ported/log-other.txt"; }
echo "--- events by step (ported)"; cat "$out/ported/events-by-step.txt"
if [ $status = 0 ]; then
    echo "PASS check 2"
    echo "summary: ${flavours[*]:1} = stock: $(wc -l < "$out/ported/list.txt") devices (tree, every dumpxml), $(grep -vc '^==' "$out/ported/events-by-step.txt") veth add/rename/delete events"
fi
exit $status
