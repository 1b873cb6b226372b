# libvirt/tests/lib-nodedev.sh: what the node-device checks (2, 4, 5) share
# (sourced). They run under libvirt/tests/run.sh (make check-libvirt), which
# gives STOCK and PORTED (the install trees) and CHECK_OUT (the check's own
# output directory); run by hand, the defaults are target/libvirt/{stock,
# ported} and target/libvirt/checks/manual/<check>.
#
# A check script calls `nde_enter_namespace "$@"` first: it re-runs itself
# as PID 1 of a private net + mount + pid namespace (unshare), where
# `nde_namespace_setup` remounts sysfs (only this namespace's net devices
# are seen) and puts a tmpfs on /run (daemon sockets, pid files and the
# nodedev driver's state stay private). Daemons run from a DESTDIR tree
# (target/libvirt/{stock,ported}) with only the nodedev module in their
# driver directory, and are stopped by their PID.
#
# Figures go to lines starting with "summary: " (the runner repeats them).
# NDE_MODULE_FOR_STOCK: where libvirt/build-module-for-stock.sh put the
# ported module for Debian's own libvirtd (check 2 then runs it too).

set -Eeuo pipefail
# A check that stops on a failing command says which one (set -e is silent).
trap 'echo "${0##*/}: line $LINENO: \"$BASH_COMMAND\" failed (exit $?)" >&2' ERR

nde_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NDE_STOCK_TREE=${STOCK:-$nde_root/target/libvirt/stock}
NDE_PORTED_TREE=${PORTED:-$nde_root/target/libvirt/ported}
NDE_CHECK_OUT=${CHECK_OUT:-$nde_root/target/libvirt/checks/manual/$(basename "$0" .sh)}
NDE_MODULE_FOR_STOCK=${NDE_MODULE_FOR_STOCK:-$nde_root/target/libvirt/module-for-stock}
export STOCK=$NDE_STOCK_TREE PORTED=$NDE_PORTED_TREE CHECK_OUT=$NDE_CHECK_OUT
nde_libdir=usr/lib/x86_64-linux-gnu
NDE_URI='nodedev:///system?socket=/run/libvirt/libvirt-sock'

nde_say() { echo "[$(date -u +%H:%M:%S)] $*"; }
nde_fail() { echo "FAIL: $*" >&2; exit 1; }

# The tree of a flavour: "stock" and "ported" (built by make libvirt), and
# "debian-ported": Debian's installed libvirtd and virsh with the ported
# module built by libvirt/build-module-for-stock.sh.
nde_tree() {
    case "$1" in
        stock) echo "$NDE_STOCK_TREE" ;;
        ported) echo "$NDE_PORTED_TREE" ;;
        debian-ported) echo "" ;;
        *) nde_fail "unknown flavour $1" ;;
    esac
}

# The nodedev module a flavour's daemon loads.
nde_module() {
    case "$1" in
        debian-ported) echo "$NDE_MODULE_FOR_STOCK/libvirt_driver_nodedev.so" ;;
        *) echo "$(nde_tree "$1")/$nde_libdir/libvirt/connection-driver/libvirt_driver_nodedev.so" ;;
    esac
}

# Re-runs the calling script inside fresh namespaces (once).
nde_enter_namespace() {
    if [ "${NDE_IN_NAMESPACE:-}" = 1 ]; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || { echo "SKIP: needs root (namespaces, netlink injection)"; exit 0; }
    local t
    for t in "$NDE_STOCK_TREE" "$NDE_PORTED_TREE"; do
        [ -x "$t/usr/sbin/libvirtd" ] || nde_fail "$t/usr/sbin/libvirtd missing: run make libvirt first"
    done
    mkdir -p "$NDE_CHECK_OUT"
    NDE_IN_NAMESPACE=1 exec unshare --net --mount --pid --fork --mount-proc \
        --propagation private bash "$0" "$@"
}

nde_namespace_setup() {
    mount -t sysfs sysfs /sys
    mount -t tmpfs -o mode=0755 tmpfs /run
    mkdir -p /run/libvirt /run/udev
    ip link set lo up
}

# Makes the udev group usable without a udevd (libudev subscribes only when
# udevd's control socket exists, or /dev is a devtmpfs).
nde_fake_udev_control() {
    touch /run/udev/control
}

# A real systemd-udevd in the namespace, with a private /dev and no rules
# (nothing renamed, the machine's /dev untouched). Its PID in NDE_UDEVD_PID.
nde_start_udevd() {
    local d e
    d=$(mktemp -d)
    for f in null zero full random urandom tty; do touch "$d/$f"; mount -n --bind "/dev/$f" "$d/$f"; done
    mount -n -t tmpfs tmpfs /dev
    for f in null zero full random urandom tty; do touch "/dev/$f"; mount -n --move "$d/$f" "/dev/$f"; done
    e=$(mktemp -d)
    mount -n --bind "$e" /usr/lib/udev/rules.d
    [ -d /etc/udev/rules.d ] && mount -n --bind "$e" /etc/udev/rules.d
    /lib/systemd/systemd-udevd >/dev/null 2>&1 &
    NDE_UDEVD_PID=$!
    local i
    for i in $(seq 100); do [ -S /run/udev/control ] && return 0; sleep 0.05; done
    nde_fail "systemd-udevd did not start"
}

nde_stop_udevd() {
    [ -n "${NDE_UDEVD_PID:-}" ] || return 0
    kill -TERM "$NDE_UDEVD_PID" 2>/dev/null || true
    wait "$NDE_UDEVD_PID" 2>/dev/null || true
    NDE_UDEVD_PID=
}

# virsh of a flavour's tree, connected to the running daemon.
nde_virsh() {
    local flavour=$1; shift
    local tree; tree=$(nde_tree "$flavour")
    LD_LIBRARY_PATH="$tree/$nde_libdir" "$tree/usr/bin/virsh" -q -c "$NDE_URI" "$@"
}

# Starts libvirtd of a flavour with only the nodedev driver; sets
# NDE_DAEMON_PID. $2: the work directory (config, log). Extra environment
# for the daemon can be given in NDE_DAEMON_ENV (array). Waits until the
# driver answers (enumeration done).
nde_start_daemon() {
    local flavour=$1 work=$2
    local tree; tree=$(nde_tree "$flavour")
    local module; module=$(nde_module "$flavour")
    local daemon="$tree/usr/sbin/libvirtd" libpath="$tree/$nde_libdir"
    mkdir -p "$work/drivers"
    rm -f /run/libvirt/libvirt-sock /run/libvirt/nodedev/driver.pid
    ln -sf "$module" "$work/drivers/libvirt_driver_nodedev.so"
    # A module built for Debian's daemon finds our library next to it
    # (RUNPATH $ORIGIN, which is the directory of the link).
    local lib
    for lib in "$(dirname "$module")"/libnodedev_events.so.*; do
        [ -e "$lib" ] && ln -sf "$lib" "$work/drivers/"
    done
    cat > "$work/libvirtd.conf" <<EOF
unix_sock_dir = "/run/libvirt"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:$work/libvirtd.log"
EOF
    : > "$work/libvirtd.log"
    env ${NDE_DAEMON_ENV[@]+"${NDE_DAEMON_ENV[@]}"} \
        LD_LIBRARY_PATH="$libpath" LIBVIRT_DRIVER_DIR="$work/drivers" \
        "$daemon" -f "$work/libvirtd.conf" -p "/run/libvirt/libvirtd-$flavour.pid" \
        >"$work/daemon.out" 2>&1 &
    NDE_DAEMON_PID=$!
    local i
    for i in $(seq 600); do
        if [ -S /run/libvirt/libvirt-sock ] && nde_virsh "$flavour" nodedev-list >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$NDE_DAEMON_PID" 2>/dev/null || { cat "$work/daemon.out" >&2; nde_fail "$flavour daemon died"; }
        sleep 0.05
    done
    nde_fail "$flavour daemon does not answer"
}

# Stops the daemon by its PID (SIGTERM) and waits for it (at most 120 s,
# then SIGKILL); sets NDE_STOP_MS to how long the exit took. Call it from
# the shell that started the daemon (not in $(...): a subshell cannot wait
# for it).
nde_stop_daemon() {
    local pid=${1:-$NDE_DAEMON_PID}
    local t0 t1
    t0=$(date +%s%N)
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 60000); do
        kill -0 "$pid" 2>/dev/null || break
        [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
        sleep 0.002
    done
    # Still running (the loop gave up): kill it. The test and the kill race
    # with bash reaping the zombie (the daemon may be our child, or
    # re-parented to this namespace's PID 1, which is this script): a kill
    # that finds nothing is fine.
    if kill -0 "$pid" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    t1=$(date +%s%N)
    wait "$pid" 2>/dev/null || true
    NDE_STOP_MS=$(( (t1 - t0) / 1000000 ))
}

# CPU seconds (user + system) used so far by a process.
nde_cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}

# Resident set size of a process in KiB.
nde_rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# CPU seconds per thread name of a process, "name seconds" lines.
nde_thread_cpu() {
    local t
    for t in /proc/"$1"/task/*; do
        awk -v hz="$(getconf CLK_TCK)" '{
            name = $0; sub(/^[^(]*\(/, "", name); sub(/\).*$/, "", name);
            rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ");
            printf "%s %.2f\n", name, (f[12] + f[13]) / hz }' "$t/stat" 2>/dev/null
    done | awk '{ s[$1] += $2 } END { for (n in s) printf "%s %.2f\n", n, s[n] }' | sort
}

# Builds the injector (once per run) into $1.
nde_build_injector() {
    cc -std=c11 -O2 -Wall -Wextra -Werror "$nde_root/libvirt/tests/uevent-inject.c" -o "$1"
}
