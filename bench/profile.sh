#!/usr/bin/env bash
# Profile the timed part of one burst run with perf (perf record -g),
# counting only from the first send to the last job's free.
#
#   bench/profile.sh [IMPL] [harness options...]
#   e.g. bench/profile.sh nde-pool --n 5000000 --producers 1
#
# Writes target/bench/perf-IMPL.data and prints the top of `perf report`.
set -euo pipefail
cd "$(dirname "$0")/.."
impl=${1:-nde-pool}
shift || true
harness=${BENCH_HARNESS:-target/bench/harness}
lib=${BENCH_NDE_LIB:-target/release/libnodedev_events.so}
command -v perf >/dev/null || { echo "profile: perf not installed (apt-get install linux-perf)" >&2; exit 1; }
[ -x "$harness" ] || make -s "$harness"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkfifo "$dir/ctl" "$dir/ack"
out=target/bench/perf-$impl.data
BENCH_PERF_CTL=$dir/ctl BENCH_PERF_ACK=$dir/ack \
    perf record -q -o "$out" -F 4999 --call-graph "${PERF_CALLGRAPH:-fp}" -D -1 --control "fifo:$dir/ctl,$dir/ack" -- \
    "$harness" --impl "$impl" --lib "$lib" --scenario burst --n 5000000 "$@"
perf report -i "$out" --no-children --sort comm,dso,symbol --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep '%' | head -${PROFILE_LINES:-30}
echo "profile: full data in $out (perf report -i $out)" >&2
