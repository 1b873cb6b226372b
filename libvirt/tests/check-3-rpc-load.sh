#!/bin/bash
# Check 3: RPC load on the daemon's thread pool (virnetserver.c ->
# virThreadPool). For stock and then ported libvirtd (nodedev driver only,
# private namespace): CLIENTS parallel virsh clients make ROUNDS rounds of
# node-device calls each while virt-admin server-threadpool-set cycles
# min/max/prio workers and server-threadpool-info is checked after every
# change; every call must be answered, every refused setting refused, and
# SIGTERM must end the daemon cleanly (exit 0). Then a short run of the
# ported daemon under valgrind: no definite leak may involve our library
# or the pool shim, and valgrind reports no memory error.
#
# Environment: CLIENTS (6), ROUNDS (1000), VALGRIND_ROUNDS (50).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib-daemon.sh
. "$here/lib-daemon.sh"
enter_private_namespace "$0" "$@"

clients=${CLIENTS:-6}
rounds=${ROUNDS:-1000}
vg_rounds=${VALGRIND_ROUNDS:-50}

# (min max prio) settings the changer cycles through; every one is valid.
settings=("1 2 0" "10 30 8" "2 4 1" "0 1 0" "5 20 5" "3 3 2" "20 40 10")

# One client: ROUNDS x (list every device; look one up and dump its XML;
# list the net devices), each round closed by an echo the client counts.
client() {  # out-file rounds
    local i
    for ((i = 1; i <= $2; i++)); do
        echo "nodedev-list"
        echo "nodedev-dumpxml computer"
        echo "nodedev-list --cap net"
        echo "echo round-done"
    done | vsh > "$1" 2> "$1.err"
}

clients_running() {  # pids
    local p
    for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done
    return 1
}

# Sets (min max prio), then reads the pool back; prints a problem or nothing.
set_and_verify() {  # min max prio
    local info want_min=$1 want_max=$2 want_prio=$3 i cur free prio
    vadm server-threadpool-set --server libvirtd --min-workers "$1" --max-workers "$2" \
        --priority-workers "$3" >/dev/null || { echo "set $*: refused"; return; }
    # min/max at once; running priority workers once surplus ones have exited
    for ((i = 0; i < 100; i++)); do
        info=$(vadm server-threadpool-info --server libvirtd)
        prio=$(awk '$1 == "prioWorkers" { print $3 }' <<<"$info")
        [ "$prio" = "$want_prio" ] && break
        sleep 0.02
    done
    awk -v min="$want_min" -v max="$want_max" -v prio="$want_prio" '
        { v[$1] = $3 }
        END {
            if (v["minWorkers"] != min || v["maxWorkers"] != max)
                printf "after set %d %d %d: min %s max %s\n", min, max, prio, v["minWorkers"], v["maxWorkers"]
            if (v["prioWorkers"] != prio)
                printf "after set %d %d %d: %s priority workers\n", min, max, prio, v["prioWorkers"]
            if (v["nWorkers"] < min)
                printf "after set %d %d %d: %s workers, below min\n", min, max, prio, v["nWorkers"]
            if (v["freeWorkers"] > v["nWorkers"])
                printf "after set %d %d %d: %s free of %s\n", min, max, prio, v["freeWorkers"], v["nWorkers"]
        }' <<<"$info"
}

load_run() {  # flavour
    local flavour=$1 dir problems=0 start ms c answered devices errs cycles=0 s pids=()
    daemon_start "$flavour" "load-$flavour"
    dir=$DAEMON_DIR
    devices=$(vsh nodedev-list | grep -c .)
    vadm server-threadpool-info --server libvirtd > "$dir/threadpool-info-start.txt"

    start=$(date +%s%N)
    for ((c = 1; c <= clients; c++)); do
        client "$dir/client-$c.out" "$rounds" &
        pids+=($!)
    done
    # change the pool while the clients run; check each change
    : > "$dir/pool-problems.txt"
    while clients_running "${pids[@]}"; do
        for s in "${settings[@]}"; do
            # shellcheck disable=SC2086
            set_and_verify $s >> "$dir/pool-problems.txt"
        done
        # refused by the server: min above the current max (40 at most),
        # max switched to 0
        vadm server-threadpool-set --server libvirtd --min-workers 50 \
            >/dev/null 2>&1 && echo "min 50 above max accepted" >> "$dir/pool-problems.txt"
        vadm server-threadpool-set --server libvirtd --min-workers 0 --max-workers 0 \
            >/dev/null 2>&1 && echo "max 0 accepted" >> "$dir/pool-problems.txt"
        cycles=$((cycles + 1))
    done
    wait "${pids[@]}"
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    vadm server-threadpool-info --server libvirtd > "$dir/threadpool-info-end.txt"

    answered=$(cat "$dir"/client-*.out | grep -c 'round-done$' || true)
    errs=$(cat "$dir"/client-*.out.err | grep -c . || true)
    daemon_stop 30
    problems=$(grep -c . "$dir/pool-problems.txt" || true)
    # 4 RPCs per round: list, lookup + dumpxml, list --cap
    echo "summary: $flavour: $clients clients x $rounds rounds ($((clients * rounds * 4)) node-device RPCs, $devices devices) in $ms ms; $answered/$((clients * rounds)) rounds answered, $errs client errors; $cycles threadpool-set cycles ($((cycles * ${#settings[@]})) settings), $problems inconsistencies; SIGTERM -> exit $DAEMON_RC in $DAEMON_STOP_MS ms"
    cat "$dir/pool-problems.txt"
    [ "$answered" -eq $((clients * rounds)) ] && [ "$errs" -eq 0 ] && [ "$problems" -eq 0 ] &&
        [ "$DAEMON_RC" -eq 0 ]
}

valgrind_run() {
    local dir log definite ours c errors
    command -v valgrind >/dev/null || { echo "valgrind missing"; return 1; }
    daemon_start ported valgrind-ported valgrind --leak-check=full --show-leak-kinds=definite \
        --errors-for-leak-kinds=definite --num-callers=40 --log-file="$CHECK_OUT/valgrind-ported.txt"
    dir=$DAEMON_DIR
    client "$dir/client.out" "$vg_rounds" &
    c=$!
    set_and_verify 2 4 1 > "$dir/pool-problems.txt"
    set_and_verify 5 20 5 >> "$dir/pool-problems.txt"
    wait "$c"
    daemon_stop 120
    log="$CHECK_OUT/valgrind-ported.txt"
    definite=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\1 bytes in \2 blocks/p' "$log" | tail -1)
    # a definite-leak record whose stack passes through our code
    ours=$(awk '/are definitely lost in loss record/ { inrec = 1; rec = $0; next }
                inrec && /^==[0-9]+== *$/ { if (rec ~ /nde_|nodedev_events|virthreadpool-nde|virThreadPool/) n++; inrec = 0; next }
                inrec { rec = rec "\n" $0 }
                END { print n + 0 }' "$log")
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tail -1)
    echo "summary: ported under valgrind: $vg_rounds rounds answered $(grep -c 'round-done$' "$dir/client.out" || true)/$vg_rounds; definitely lost: ${definite:-0 bytes}; leak records through nodedev-events or the pool: $ours; ${errors:-?} valgrind errors; SIGTERM -> exit $DAEMON_RC in $DAEMON_STOP_MS ms"
    [ "$ours" -eq 0 ] && [ "${errors:-1}" = 0 ] && [ "$DAEMON_RC" -eq 0 ] &&
        [ ! -s "$dir/pool-problems.txt" ] && [ "$(grep -c 'round-done$' "$dir/client.out")" -eq "$vg_rounds" ]
}

rc=0
load_run stock || rc=1
load_run ported || rc=1
valgrind_run || rc=1
exit $rc
