#!/bin/bash
# Check 4 of issue 11: a storm of injected udev-group adds, stock vs ported
# in the same run. In a private net + mount + pid namespace (sysfs
# remounted, a private /run with /run/udev/control and no udevd), each
# daemon in turn (only the nodedev driver) gets N libudev-format "add"
# messages for SCSI generic nodes (no sysfs entry needed) on netlink group 2 while a
# `virsh nodedev-event --event lifecycle --loop --timestamp` listener runs.
# Reported per flavour: time from the first message sent to the last event
# printed by the listener, events/s, daemon CPU per event (and per thread),
# RSS per device, events lost. The check fails only if an event is lost;
# figures are reported and compared, never asserted.
#
#   check-4-storm.sh [--count N] [--profile]
#
# --profile: after the comparison, one more ported storm under
# `perf record` (skipped when perf is not installed); the
# report by library and by symbol goes to $CHECK_OUT/profile-*.
. "$(dirname "$0")/lib-nodedev.sh"
nde_enter_namespace "$@"

count=100000
profile=0
while [ $# -gt 0 ]; do
    case "$1" in
        --count) count=$2; shift 2 ;;
        --profile) profile=1; shift ;;
        *) echo "usage: $0 [--count N] [--profile]" >&2; exit 2 ;;
    esac
done

out="$NDE_CHECK_OUT"
rm -rf "${out:?}"/*
mkdir -p "$out"
nde_namespace_setup
nde_fake_udev_control
inject="$out/uevent-inject"
nde_build_injector "$inject"

# Waits until the listener printed $2 lines matching $3 (or stops making
# progress for 60 s). Prints the count.
wait_lines() {
    local f=$1 want=$2 pat=$3 n=0 last=-1 idle=0
    while :; do
        n=$(grep -c "$pat" "$f" || true)
        [ "$n" -ge "$want" ] && break
        if [ "$n" = "$last" ]; then
            idle=$((idle + 1))
            [ $idle -ge 600 ] && break
        else
            idle=0
        fi
        last=$n
        sleep 0.1
    done
    echo "$n"
}

# Seconds since the epoch of a virsh --timestamp line.
line_time() {
    local ts; ts=$(sed -E 's/^([0-9-]+ [0-9:.]+)\+0000: .*/\1/' <<< "$1")
    date -u -d "$ts" +%s.%N
}

storm() {
    local flavour=$1 dir=$2
    mkdir -p "$dir"
    nde_start_daemon "$flavour" "$dir"
    local pid=$NDE_DAEMON_PID
    stdbuf -oL env LD_LIBRARY_PATH="$(nde_tree "$flavour")/$nde_libdir" \
        "$(nde_tree "$flavour")/usr/bin/virsh" -q -c "$NDE_URI" \
        nodedev-event --event lifecycle --loop --timestamp > "$dir/events.txt" 2>&1 &
    local listener=$!
    # The listener is registered once it sees a probe device.
    local i
    for i in $(seq 100); do
        "$inject" --action add --count 1 --prefix "probe$i-" > /dev/null
        sleep 0.1
        grep -q "scsi_generic_probe" "$dir/events.txt" && break
    done
    grep -q "scsi_generic_probe" "$dir/events.txt" || nde_fail "$flavour: the listener sees no event"

    local cpu0 rss0 lcpu0
    cpu0=$(nde_cpu_s "$pid"); rss0=$(nde_rss_kib "$pid"); lcpu0=$(nde_cpu_s "$listener")
    nde_thread_cpu "$pid" > "$dir/threads-before.txt"
    if [ -n "${NDE_PERF:-}" ]; then
        # the whole daemon (flat), and the ordered worker with call graphs
        local worker t
        for t in /proc/"$pid"/task/*; do
            [ "$(cat "$t/comm")" = nodedev-ev ] && worker=${t##*/}
        done
        perf record -F 4999 -p "$pid" -o "$dir/perf.data" > "$dir/perf.out" 2>&1 &
        local perfpid=$!
        perf record -F 997 --call-graph dwarf,16384 -t "$worker" -o "$dir/perf-worker.data" \
            > "$dir/perf-worker.out" 2>&1 &
        local perfpid2=$!
        sleep 1
    fi
    local sent t0
    read -r _ sent t0 < <("$inject" --action add --count "$count" --prefix storm)
    local got; got=$(wait_lines "$dir/events.txt" "$count" "node device scsi_generic_storm[0-9]*: Created")
    local cpu1 rss1 lcpu1
    cpu1=$(nde_cpu_s "$pid"); rss1=$(nde_rss_kib "$pid"); lcpu1=$(nde_cpu_s "$listener")
    # The listener is a stage of the pipeline too: its CPU per event bounds
    # the rate this check can see.
    awk -v a="$lcpu0" -v b="$lcpu1" -v n="$count" 'BEGIN { printf "  %-18s %7.1f us/event\n", "virsh (listener)", (b - a) * 1e6 / n }' \
        > "$dir/listener.txt"
    nde_thread_cpu "$pid" > "$dir/threads-after.txt"
    if [ -n "${NDE_PERF:-}" ]; then
        kill -INT "$perfpid" "$perfpid2"; wait "$perfpid" "$perfpid2" 2>/dev/null || true
    fi
    local last; last=$(grep "node device scsi_generic_storm[0-9]*: Created" "$dir/events.txt" | tail -1)
    local t1; t1=$(line_time "$last")
    kill -TERM "$listener" 2>/dev/null || true
    wait "$listener" 2>/dev/null || true
    nde_stop_daemon "$pid"; local ms=$NDE_STOP_MS
    local distinct; distinct=$(grep -o "node device scsi_generic_storm[0-9]*: Created" "$dir/events.txt" | sort -u | wc -l)
    awk -v f="$flavour" -v n="$count" -v sent="$sent" -v got="$distinct" -v t0="$t0" -v t1="$t1" \
        -v c0="$cpu0" -v c1="$cpu1" -v r0="$rss0" -v r1="$rss1" -v ms="$ms" 'BEGIN {
            d = t1 - t0; printf "%s %d %d %d %.3f %.0f %.1f %.0f %d\n",
            f, n, sent, n - got, d, got / d, (c1 - c0) * 1e6 / n, (r1 - r0) * 1024 / n, ms }' \
        > "$dir/result.txt"
    # CPU per event by thread
    join -a1 -e 0 -o 0,1.2,2.2 "$dir/threads-after.txt" "$dir/threads-before.txt" 2>/dev/null |
        awk -v n="$count" '{ d = $2 - $3; if (d > 0.005) printf "  %-18s %7.1f us/event\n", $1, d * 1e6 / n }' \
        > "$dir/threads.txt"
}

for flavour in stock ported; do
    nde_say "$flavour: storm of $count adds"
    storm "$flavour" "$out/$flavour"
    nde_say "$flavour: $(cat "$out/$flavour/result.txt")"
done

{
    echo "storm of $count injected udev-group adds, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
    printf '%-7s %8s %6s %10s %10s %12s %10s %8s\n' flavour events lost "time (s)" "events/s" "CPU/ev (us)" "RSS/dev (B)" "exit (ms)"
    for flavour in stock ported; do
        read -r f n sent lost d rate cpu rss ms < "$out/$flavour/result.txt"
        printf '%-7s %8s %6s %10s %10s %12s %10s %8s\n' "$f" "$n" "$lost" "$d" "$rate" "$cpu" "$rss" "$ms"
    done
    for flavour in stock ported; do
        echo "$flavour daemon CPU by thread:"; cat "$out/$flavour/threads.txt" "$out/$flavour/listener.txt"
    done
    read -r _ _ _ _ _ srate scpu _ _ < "$out/stock/result.txt"
    read -r _ _ _ _ _ prate pcpu _ _ < "$out/ported/result.txt"
    awk -v sr="$srate" -v pr="$prate" -v sc="$scpu" -v pc="$pcpu" 'BEGIN {
        printf "ported/stock: rate x%.2f (target >= 3), CPU per event x%.2f (target <= 0.33)\n", pr / sr, pc / sc }'
} > "$out/summary.txt"
sed 's/^/summary: /' "$out/summary.txt"

if [ $profile = 1 ]; then
    if command -v perf > /dev/null; then
        nde_say "profile: ported storm under perf"
        NDE_PERF=1 storm ported "$out/profile"
        # (head closes the pipe early: no pipefail here)
        set +o pipefail
        perf report -i "$out/profile/perf.data" --no-children --sort comm --stdio 2>/dev/null \
            | grep '%' | head -15 > "$out/profile-by-thread.txt"
        perf report -i "$out/profile/perf.data" --no-children --sort comm,dso --stdio 2>/dev/null \
            | grep '%' | head -30 > "$out/profile-by-dso.txt"
        perf report -i "$out/profile/perf.data" --no-children --sort comm,dso,symbol --stdio 2>/dev/null \
            | grep '%' | head -80 > "$out/profile-by-symbol.txt"
        # The worker's time by what it runs (inclusive): libvirt's handler
        # and its parts, the library's built-in table handler, the release
        # of each event's udev device.
        perf report -i "$out/profile/perf-worker.data" --children --stdio -g none 2>/dev/null \
            | sed -nE 's/^ *([0-9.]+%) +[0-9.]+% +.*\[[.k]\] (.*[^ -])[ -]*$/\1  \2/p' \
            | grep -E '  (nodedev_events::callbacks::Registry::dispatch|nodeDeviceEventHandler|udevAddOneDevice|udev_device_get_parent|virObjectEventStateQueueRemote|virNodeDeviceObjListAssignDef|nodedev_events::monitor::handle|nodedev_events::monitor::source::free_udev_device)( \(inlined\))?$' \
            > "$out/profile-worker.txt"
        set -o pipefail
        echo "--- the worker's time, inclusive"; cat "$out/profile-worker.txt"
        sed 's/^ */summary: worker /' "$out/profile-worker.txt"
        echo "--- profile by thread"; cat "$out/profile-by-thread.txt"
        echo "--- profile by thread and library"; cat "$out/profile-by-dso.txt"
        sed -n 's/^ *\([0-9.]*%\) *\(nodedev-ev\|nodedev-udev\|libvirtd\) *\(.*\)$/summary: profile \2 \1 \3/p' \
            "$out/profile-by-dso.txt" | head -12
    else
        echo "perf not installed: no profile"
    fi
fi

status=0
for flavour in stock ported; do
    read -r _ _ _ lost _ < "$out/$flavour/result.txt"
    [ "$lost" = 0 ] || { echo "FAIL: $flavour lost $lost events"; status=1; }
done
[ $status = 0 ] && echo "PASS check 4: no event lost (figures above are reported, not asserted)"
exit $status
