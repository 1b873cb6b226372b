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
# ported module for Debian's own libvirtd (check 2 then runs it too);
# NDE_DEBIAN_TREE: the root of Debian's libvirtd and virsh ("" = the
# machine's own, as for 9.0; 11.3's is extracted under target/).
# LIBVIRT_VERSION: the release checked (9.0 or 11.3).

set -Eeuo pipefail
# A check that stops on a failing command says which one (set -e is silent).
trap 'echo "${0##*/}: line $LINENO: \"$BASH_COMMAND\" failed (exit $?)" >&2' ERR

nde_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NDE_STOCK_TREE=${STOCK:-$nde_root/target/libvirt/stock}
NDE_PORTED_TREE=${PORTED:-$nde_root/target/libvirt/ported}
NDE_CHECK_OUT=${CHECK_OUT:-$nde_root/target/libvirt/checks/manual/$(basename "$0" .sh)}
NDE_MODULE_FOR_STOCK=${NDE_MODULE_FOR_STOCK:-$nde_root/target/libvirt/module-for-stock}
NDE_DEBIAN_TREE=${NDE_DEBIAN_TREE:-}
LIBVIRT_VERSION=${LIBVIRT_VERSION:-9.0}
export NDE_MODULE_FOR_STOCK NDE_DEBIAN_TREE LIBVIRT_VERSION
export STOCK=$NDE_STOCK_TREE PORTED=$NDE_PORTED_TREE CHECK_OUT=$NDE_CHECK_OUT
nde_libdir=usr/lib/x86_64-linux-gnu
NDE_URI='nodedev:///system?socket=/run/libvirt/libvirt-sock'

nde_say() { echo "[$(date -u +%H:%M:%S)] $*"; }
nde_fail() { echo "FAIL: $*" >&2; exit 1; }

# The tree of a flavour: "stock" and "ported" (built by make libvirt), and
# "debian-ported": Debian's libvirtd and virsh (installed, or extracted
# into NDE_DEBIAN_TREE) with the ported module built by
# libvirt/build-module-for-stock.sh.
nde_tree() {
    case "$1" in
        stock) echo "$NDE_STOCK_TREE" ;;
        ported) echo "$NDE_PORTED_TREE" ;;
        debian-ported) echo "$NDE_DEBIAN_TREE" ;;
        *) nde_fail "unknown flavour $1" ;;
    esac
}

# The library path of a flavour's programs (an extracted Debian tree has
# libraries in both usr/lib and lib).
nde_libpath() {
    local tree; tree=$(nde_tree "$1")
    echo "$tree/$nde_libdir:$tree/lib/x86_64-linux-gnu"
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
    nde_hide_mdevctl
}

# A machine with mdevctl installed (a fresh Debian 12 has none) makes
# every remove cost libvirt two real mdevctl runs (11.3 stock: two per
# event), which turns an overflow storm of 200 000 removes into hours.
# The checks run as on a machine without it: in this mount namespace,
# /usr/bin and /usr/sbin are overlaid with a whiteout for mdevctl. Check
# 7d brings Debian's mdevctl back on purpose.
nde_hide_mdevctl() {
    local d up
    for d in /usr/bin /usr/sbin; do
        [ -e "$d/mdevctl" ] || continue
        up=$(mktemp -d /run/nde-hide.XXXXXX)
        mkdir -p "$up/upper" "$up/work"
        mknod "$up/upper/mdevctl" c 0 0
        mount -t overlay overlay -o "lowerdir=$d,upperdir=$up/upper,workdir=$up/work" "$d"
    done
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
    LD_LIBRARY_PATH="$(nde_libpath "$flavour")" "$tree/usr/bin/virsh" -q -c "$NDE_URI" "$@"
}

# Starts libvirtd of a flavour with only the nodedev driver; sets
# NDE_DAEMON_PID. $2: the work directory (config, log). Extra environment
# for the daemon can be given in NDE_DAEMON_ENV (array). Waits until the
# driver answers (enumeration done).
nde_start_daemon() {
    local flavour=$1 work=$2
    local tree; tree=$(nde_tree "$flavour")
    local module; module=$(nde_module "$flavour")
    local daemon="$tree/usr/sbin/libvirtd" libpath; libpath=$(nde_libpath "$flavour")
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

# --- for the checks of the seed's defects (11.3: check-7*) ---------------

# Exits 77 with a SKIP line unless the release checked is $1 (the runner
# lists the check as skipped).
nde_only_for() {
    [ "$LIBVIRT_VERSION" = "$1" ] && return 0
    echo "SKIP: not for libvirt $LIBVIRT_VERSION (checks a defect of libvirt $1's node-device driver)"
    exit 77
}

# Waits until file $1 has $2 lines matching the regex $3, or makes no
# progress for $4 seconds (default 60). Prints the count.
nde_wait_lines() {
    local f=$1 want=$2 pat=$3 idle_max=$(( ${4:-60} * 10 )) n=0 last=-1 idle=0
    while :; do
        n=$(grep -c -E "$pat" "$f" 2>/dev/null || true)
        [ "$n" -ge "$want" ] && break
        if [ "$n" = "$last" ]; then
            idle=$((idle + 1))
            [ $idle -ge "$idle_max" ] && break
        else
            idle=0
        fi
        last=$n
        sleep 0.1
    done
    echo "$n"
}

# Waits until file $1 has not changed size for $2 seconds (at most $3 s).
nde_wait_quiet() {
    local f=$1 quiet=$(( $2 * 10 )) limit=$(( $3 * 10 )) last=-1 same=0 size t=0
    while [ "$t" -lt "$limit" ]; do
        size=$(stat -c %s "$f" 2>/dev/null || echo 0)
        if [ "$size" = "$last" ]; then
            same=$((same + 1))
            [ $same -ge "$quiet" ] && return 0
        else
            same=0
        fi
        last=$size
        sleep 0.1
        t=$((t + 1))
    done
}

# A `virsh nodedev-event --event lifecycle --loop` listener of a flavour's
# tree writing to $2; its PID in NDE_LISTENER_PID.
nde_start_listener() {
    local flavour=$1 file=$2
    stdbuf -oL env LD_LIBRARY_PATH="$(nde_libpath "$flavour")" \
        "$(nde_tree "$flavour")/usr/bin/virsh" -q -c "$NDE_URI" \
        nodedev-event --event lifecycle --loop > "$file" 2>&1 &
    NDE_LISTENER_PID=$!
}

nde_stop_listener() {
    kill -TERM "$NDE_LISTENER_PID" 2>/dev/null || true
    wait "$NDE_LISTENER_PID" 2>/dev/null || true
}

# The verdict of a defect check: $1 names the defect, $2 and $3 are "yes"
# or "no" for "stock shows it" and "ported shows it". Passes only when
# stock shows it and ported does not: run with PORTED=$STOCK, the check
# fails (the defect is there), which is what a check of a fix must do.
nde_defect_verdict() {
    local what=$1 stock=$2 ported=$3 status=0
    if [ "$stock" = yes ]; then
        echo "stock 11.3 shows the defect: $what"
    else
        echo "FAIL: stock 11.3 did not show the defect ($what): the check cannot tell a fix from a miss"; status=1
    fi
    if [ "$ported" = no ]; then
        echo "ported 11.3 does not: fixed"
    else
        echo "FAIL: ported 11.3 shows the defect too: $what"; status=1
    fi
    return $status
}
