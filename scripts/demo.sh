#!/bin/sh
# The main demo (`make run`): nodedev-monitor prints the device inventory as
# a tree, then live lifecycle events in `virsh nodedev-event`'s format.
#
# As root, the demo runs in a private network and mount namespace and
# hot-plugs a veth pair there (add, rename, delete), so you see events
# without touching the host's network. Otherwise it watches the host for
# DEMO_SECONDS (default 20): plug something in, or run `ip link add ...`.
#
# Usage: scripts/demo.sh PATH/TO/nodedev-monitor [extra monitor options]
set -eu
tool=$1
shift

if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null \
    && unshare -n -m true 2>/dev/null; then
    echo "== nodedev-monitor in a private network namespace; a veth pair comes and goes =="
    exec unshare -n -m --propagation private sh -c '
        mount -n -t sysfs sysfs /sys
        ip link set lo up
        ( sleep 1.5
          ip link add demo0 type veth peer name demo1
          sleep 0.5; ip link set demo0 name demo-renamed
          sleep 0.5; ip link del demo-renamed
          sleep 0.5; echo change > /sys/class/net/lo/uevent ) &
        exec "$0" --kernel --timeout 4 "$@"
    ' "$tool" "$@"
fi

echo "== nodedev-monitor on this host for ${DEMO_SECONDS:-20} s: hot-plug a device to see events =="
exec "$tool" --timeout "${DEMO_SECONDS:-20}" "$@"
