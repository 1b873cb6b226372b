# libvirt/tests/lib-daemon.sh: sourced by the checks that run a libvirtd
# from target/libvirt/{stock,ported} (needs root).
#
#   enter_private_namespace "$0" "$@"
#       re-runs the calling script in a private net + mount + pid namespace
#       (once; the script's PID 1 takes every daemon down with it), then
#       mounts this namespace's sysfs (its own network devices only) and a
#       private tmpfs on /run (sockets, pid files, /run/libvirt/nodedev).
#   daemon_start FLAVOUR NAME [WRAPPER...]
#       starts FLAVOUR's libvirtd (stock|ported) with only the nodedev driver
#       module, a private config and logs in $CHECK_OUT/NAME/, optionally
#       under WRAPPER (e.g. valgrind ...); waits for its socket. Sets
#       DAEMON_PID, DAEMON_DIR, DAEMON_TREE. Extra libvirtd.conf lines come
#       from $DAEMON_CONF_EXTRA.
#   daemon_stop [TIMEOUT_S]
#       SIGTERM to DAEMON_PID, waits up to TIMEOUT_S (30) for it to exit;
#       sets DAEMON_RC (its exit status, 124 on timeout: then SIGKILLed) and
#       DAEMON_STOP_MS (SIGTERM to exit).
#   vsh ARGS...       virsh of the daemon's tree, connected to it
#   vadm ARGS...      virt-admin of the daemon's tree, connected to its admin socket

LIBVIRT_LIBDIR=usr/lib/x86_64-linux-gnu
LIBVIRT_SOCK=/run/libvirt/libvirt-sock
LIBVIRT_ADMIN_SOCK=/run/libvirt/libvirt-admin-sock

enter_private_namespace() {
    if [ "${NDE_IN_PRIVATE_NS:-}" != 1 ]; then
        exec unshare --net --mount --pid --fork --mount-proc --propagation private \
            env NDE_IN_PRIVATE_NS=1 "$@"
    fi
    mount -t sysfs sysfs /sys
    mount -t tmpfs -o mode=0755 tmpfs /run
    mkdir -p /run/libvirt
    ip link set lo up 2>/dev/null || true
}

daemon_start() {
    local flavour=$1 name=$2 waited=0
    shift 2
    case "$flavour" in
        stock) DAEMON_TREE=$STOCK ;;
        ported) DAEMON_TREE=$PORTED ;;
        *) echo "daemon_start: unknown flavour $flavour" >&2; return 1 ;;
    esac
    DAEMON_DIR="$CHECK_OUT/$name"
    rm -rf "$DAEMON_DIR" /run/libvirt
    mkdir -p "$DAEMON_DIR/drivers" /run/libvirt
    ln -s "$DAEMON_TREE/$LIBVIRT_LIBDIR/libvirt/connection-driver/libvirt_driver_nodedev.so" \
        "$DAEMON_DIR/drivers/"
    cat > "$DAEMON_DIR/libvirtd.conf" <<EOF
auth_unix_ro = "none"
auth_unix_rw = "none"
unix_sock_group = "root"
min_workers = 5
max_workers = 20
prio_workers = 5
log_outputs = "3:file:$DAEMON_DIR/libvirtd.log"
${DAEMON_CONF_EXTRA:-}
EOF
    LD_LIBRARY_PATH="$DAEMON_TREE/$LIBVIRT_LIBDIR" LIBVIRT_DRIVER_DIR="$DAEMON_DIR/drivers" \
        "$@" "$DAEMON_TREE/usr/sbin/libvirtd" -f "$DAEMON_DIR/libvirtd.conf" \
        > "$DAEMON_DIR/stdout" 2>&1 &
    DAEMON_PID=$!
    # the socket, then an answer (the driver waits for its enumeration)
    while [ ! -S "$LIBVIRT_SOCK" ] || ! vsh nodedev-list >/dev/null 2>&1; do
        if ! kill -0 "$DAEMON_PID" 2>/dev/null || [ $waited -ge 1200 ]; then
            echo "daemon_start: $flavour libvirtd did not come up; its log:" >&2
            tail -20 "$DAEMON_DIR/stdout" "$DAEMON_DIR/libvirtd.log" >&2
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

daemon_stop() {
    local timeout_s=${1:-30} start state
    start=$(date +%s%N)
    kill -TERM "$DAEMON_PID" 2>/dev/null || echo "daemon_stop: libvirtd $DAEMON_PID had already exited" >&2
    while :; do
        state=$(awk '{ print $3 }' "/proc/$DAEMON_PID/stat" 2>/dev/null || echo gone)
        [ "$state" = Z ] || [ "$state" = gone ] && break
        if [ $(( ($(date +%s%N) - start) / 1000000000 )) -ge "$timeout_s" ]; then
            kill -KILL "$DAEMON_PID"
            wait "$DAEMON_PID" 2>/dev/null
            DAEMON_RC=124
            DAEMON_STOP_MS=$(( ($(date +%s%N) - start) / 1000000 ))
            return
        fi
        sleep 0.02
    done
    DAEMON_STOP_MS=$(( ($(date +%s%N) - start) / 1000000 ))
    DAEMON_RC=0
    wait "$DAEMON_PID" || DAEMON_RC=$?
}

vsh() {
    LD_LIBRARY_PATH="$DAEMON_TREE/$LIBVIRT_LIBDIR" "$DAEMON_TREE/usr/bin/virsh" \
        -c "nodedev:///system?socket=$LIBVIRT_SOCK" "$@"
}

vadm() {
    LD_LIBRARY_PATH="$DAEMON_TREE/$LIBVIRT_LIBDIR" "$DAEMON_TREE/usr/bin/virt-admin" \
        -c "libvirtd:///system?socket=$LIBVIRT_ADMIN_SOCK" "$@"
}
