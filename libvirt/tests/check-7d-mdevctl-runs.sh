#!/bin/bash
# Check 7d (libvirt 11.3, the seed's defect "mdevctl runs per event"):
# stock 11.3 runs Debian's mdevctl (`mdevctl list --defined --dumpjson`,
# then `mdevctl list --dumpjson`) synchronously on its one worker for every
# remove and for every add of an mdev parent; the ported driver runs it once
# per burst. Counted on Debian's real mdevctl (extracted by `make
# libvirt-11.3` into target/libvirt/11.3/debian), through a wrapper first in
# the daemon's PATH (and put in place of /usr/bin/mdevctl or
# /usr/sbin/mdevctl where the machine has one: a build configured while
# mdevctl was installed runs that path) that appends one line per execution
# and then runs it. Both daemons must also list the defined mdev.
#
# In a private net + mount + pid namespace (sysfs remounted, private /run
# with /run/udev/control, no udevd), for each flavour in turn:
#   - /etc is overlaid by a private tmpfs layer holding /etc/mdevctl.d with
#     scripts.d/callouts, scripts.d/notifiers and one defined mdev: mdevctl
#     works without mdev hardware for defined devices; the machine's /etc
#     is not touched;
#   - removes: N injected SCSI generic adds, then their N removes;
#   - mdev-parent adds: M injected adds of s390 channel subsystem devices
#     (SUBSYSTEM=css, DRIVER=vfio_ccw) whose sysfs directories are a tmpfs
#     on /sys/kernel/debug with an mdev_supported_types entry each: a
#     stand-in for mdev-capable hardware, which this machine cannot have;
#     libvirt reads the mdev types from there as from real sysfs.
# mdevctl executions are counted from the last event's arrival until the
# daemon has made none for 3 s (a debounced run is counted too).
#
# The defect: at least one run per event (removes or parent adds). Passes
# when stock shows it and ported does not.
#
# Environment: REMOVES (20), PARENT_ADDS (10).
. "$(dirname "$0")/lib-nodedev.sh"
nde_only_for 11.3
nde_enter_namespace "$@"

n=${REMOVES:-20}
m=${PARENT_ADDS:-10}
out="$NDE_CHECK_OUT"
rm -rf "${out:?}"/*
mkdir -p "$out"
nde_namespace_setup
nde_fake_udev_control
inject="$out/uevent-inject"
nde_build_injector "$inject"

real_mdevctl="$NDE_DEBIAN_TREE/usr/bin/mdevctl"
[ -x "$real_mdevctl" ] || nde_fail "$real_mdevctl missing: run make libvirt-11.3 (it extracts Debian's mdevctl)"

# /etc/mdevctl.d in a private overlay of /etc.
layer=$(mktemp -d)
mount -t tmpfs tmpfs "$layer"
mkdir -p "$layer/upper" "$layer/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$layer/upper,workdir=$layer/work" /etc
mkdir -p /etc/mdevctl.d/scripts.d/callouts /etc/mdevctl.d/scripts.d/notifiers /etc/mdevctl.d/0.0.0fff
echo '{"mdev_type": "vfio_ccw-io", "start": "manual", "attrs": []}' \
    > /etc/mdevctl.d/0.0.0fff/6d1f3c52-7a3e-4f0b-9c61-0f3f8d2b7a11
"$real_mdevctl" list --defined --dumpjson > "$out/mdevctl-defined.json" ||
    nde_fail "Debian's mdevctl does not list the defined device"

# The counting wrapper.
wrap=/run/nde-mdevctl
mkdir -p "$wrap"
cat > "$wrap/mdevctl" <<EOF
#!/bin/sh
echo "\$*" >> "$wrap/runs"
exec "$real_mdevctl" "\$@"
EOF
chmod +x "$wrap/mdevctl"
# A build that found mdevctl on the machine runs it by its absolute path
# (meson's MDEVCTL): where the machine has one (nde_namespace_setup hid it
# under an overlay of its directory), the wrapper takes its place, in this
# mount namespace only.
for d in /usr/bin /usr/sbin; do
    [ "$(findmnt -n -o FSTYPE --mountpoint "$d" 2>/dev/null)" = overlay ] && cp "$wrap/mdevctl" "$d/mdevctl"
done

# The mdev parents' sysfs directories.
parents=/sys/kernel/debug
mount -t tmpfs tmpfs "$parents"
for i in $(seq 0 $((m - 1))); do
    t=$(printf '%s/nde-css/0.0.%04x/mdev_supported_types/vfio_ccw-io' "$parents" "$i")
    mkdir -p "$t/devices"
    echo "I/O subchannel (Non-QDIO)" > "$t/name"
    echo vfio-ccw > "$t/device_api"
    echo 1 > "$t/available_instances"
done

runs() { grep -c . "$wrap/runs" 2>/dev/null || true; }

count_flavour() {
    local flavour=$1 dir="$out/$1" c0 c1 c2 c3 got
    mkdir -p "$dir"
    : > "$wrap/runs"
    NDE_DAEMON_ENV=(PATH="$wrap:$PATH")
    nde_start_daemon "$flavour" "$dir"
    local pid=$NDE_DAEMON_PID
    nde_start_listener "$flavour" "$dir/events.txt"
    sleep 1
    nde_wait_quiet "$wrap/runs" 3 60
    c0=$(runs)

    "$inject" --action add --count "$n" --prefix mdrm > /dev/null
    got=$(nde_wait_lines "$dir/events.txt" "$n" "scsi_generic_mdrm[0-9]+: Created")
    [ "$got" -ge "$n" ] || nde_fail "$flavour: $got of $n adds seen"
    nde_wait_quiet "$wrap/runs" 3 60
    c1=$(runs)
    "$inject" --action remove --count "$n" --prefix mdrm > /dev/null
    got=$(nde_wait_lines "$dir/events.txt" "$n" "scsi_generic_mdrm[0-9]+: Deleted")
    [ "$got" -ge "$n" ] || nde_fail "$flavour: $got of $n removes seen"
    nde_wait_quiet "$wrap/runs" 3 60
    c2=$(runs)

    "$inject" --action add --type css --count "$m" --prefix /kernel/debug/nde-css > /dev/null
    got=$(nde_wait_lines "$dir/events.txt" "$m" "css_0_0_[0-9a-f]+: Created")
    [ "$got" -ge "$m" ] || nde_fail "$flavour: $got of $m mdev-parent adds seen"
    nde_wait_quiet "$wrap/runs" 3 60
    c3=$(runs)
    nde_virsh "$flavour" nodedev-list --cap mdev_types > "$dir/mdev-parents.txt" || true
    nde_virsh "$flavour" nodedev-list --inactive > "$dir/inactive.txt" || true

    nde_stop_listener
    nde_stop_daemon "$pid"
    cp "$wrap/runs" "$dir/mdevctl-runs.txt"
    echo "$flavour $c0 $n $((c2 - c1)) $m $((c3 - c2)) $(grep -c . "$dir/mdev-parents.txt" || true) $(grep -c '^mdev_6d1f3c52' "$dir/inactive.txt" || true)" > "$dir/result.txt"
}

for flavour in stock ported; do
    count_flavour "$flavour"
    nde_say "$(cat "$out/$flavour/result.txt")"
done

{
    echo "mdevctl executions (Debian's mdevctl $("$real_mdevctl" --version 2>/dev/null | head -1 || echo '?'))"
    printf '%-7s %9s %8s %14s %12s %14s %13s %13s\n' flavour "at start" removes "runs (per ev)" "parent adds" "runs (per ev)" "mdev parents" "defined mdev"
    for flavour in stock ported; do
        read -r f c0 rn rr pn pr listed defined < "$out/$flavour/result.txt"
        printf '%-7s %9s %8s %14s %12s %14s %13s %13s\n' "$f" "$c0" "$rn" "$rr ($(awk -v a="$rr" -v b="$rn" 'BEGIN { printf "%.1f", a / b }'))" \
            "$pn" "$pr ($(awk -v a="$pr" -v b="$pn" 'BEGIN { printf "%.1f", a / b }'))" "$listed" "$defined"
    done
} > "$out/summary.txt"
sed 's/^/summary: /' "$out/summary.txt"

# A run per event or more, for removes or for parent adds. A daemon that
# never ran mdevctl (at start, for the removes, for the parents) or does
# not list the defined mdev is not counted as fixed: it fails.
per_event() {
    local f c0 rn rr pn pr listed defined
    read -r f c0 rn rr pn pr listed defined < "$out/$1/result.txt"
    [ "$listed" -ge "$m" ] || nde_fail "$1: $listed of $m mdev parents listed: the stand-in did not work"
    [ "$defined" = 1 ] || nde_fail "$1: the mdev defined in /etc/mdevctl.d is not listed"
    { [ "$c0" -ge 1 ] && [ "$rr" -ge 1 ] && [ "$pr" -ge 1 ]; } ||
        nde_fail "$1: mdevctl ran $c0 times at start, $rr for the removes, $pr for the parent adds: the counting missed it, or the daemon no longer updates"
    if [ "$rr" -ge "$rn" ] || [ "$pr" -ge "$pn" ]; then echo yes; else echo no; fi
}
nde_defect_verdict "mdevctl runs for every remove and every mdev-parent add" \
    "$(per_event stock)" "$(per_event ported)" && echo "PASS check 7d"
