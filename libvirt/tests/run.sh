#!/bin/bash
# libvirt/tests/run.sh: the checks of the libvirt port (`make check-libvirt`).
#
# Runs every libvirt/tests/check-*.sh in name order (or only those named on
# the command line, e.g. `run.sh 1-meson-test`), each against both trees
# that libvirt/build.sh installed. A check exits 0 when it passes and prints
# its figures on lines starting with "summary: "; its whole output goes to
# target/libvirt/checks/<run>/<check>.log, and it may write more files into
# $CHECK_OUT. The run is named LIBVIRT_RUN_NAME, or by UTC time and commit.
#
# Environment given to each check: ROOT (repository), STOCK and PORTED (the
# install trees), STOCK_BUILD / PORTED_BUILD and STOCK_SRC / PORTED_SRC
# (meson build and source dirs), CHECK_OUT (its own output directory).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/../.." && pwd)
work="$ROOT/target/libvirt-work"
export ROOT
export STOCK="$ROOT/target/libvirt/stock" PORTED="$ROOT/target/libvirt/ported"
export STOCK_BUILD="$work/build-stock" PORTED_BUILD="$work/build-ported"
export STOCK_SRC="$work/pristine/libvirt-9.0.0" PORTED_SRC="$work/ported-src/libvirt-9.0.0"

for t in "$STOCK" "$PORTED"; do
    if [ ! -x "$t/usr/sbin/libvirtd" ]; then
        echo "check-libvirt: $t is missing: run 'make libvirt' first" >&2
        exit 2
    fi
done

# What the checks run besides the two trees (valgrind for 3 and 6, ip for
# 2 and 5, systemd-udevd for 2, python3 for 1b, gcc for the injector and
# the pool program): installed when missing, as `make check` does.
"$ROOT/scripts/install-deps.sh" python3 ||
    { echo "check-libvirt: the checks' packages are missing" >&2; exit 2; }

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
run=${LIBVIRT_RUN_NAME:-run-$(date -u +%Y%m%dT%H%M%SZ)-$commit}
out="$ROOT/target/libvirt/checks/$run"
mkdir -p "$out"

checks=()
if [ $# -gt 0 ]; then
    for name in "$@"; do
        name=${name#check-}; checks+=("$here/check-${name%.sh}.sh")
    done
else
    for c in "$here"/check-*.sh; do checks+=("$c"); done
fi

echo "check-libvirt: run $run (commit $commit), logs in ${out#"$ROOT"/}"
failed=()
for c in "${checks[@]}"; do
    name=$(basename "$c" .sh)
    if [ ! -x "$c" ]; then
        echo "FAIL $name: no such check" ; failed+=("$name"); continue
    fi
    export CHECK_OUT="$out/$name"
    mkdir -p "$CHECK_OUT"
    start=$(date +%s)
    "$c" > "$out/$name.log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        echo "PASS $name (${secs}s)"
    else
        echo "FAIL $name (${secs}s, exit $rc): see ${out#"$ROOT"/}/$name.log"
        tail -n 15 "$out/$name.log" | sed 's/^/    /'
        failed+=("$name")
    fi
    grep '^summary: ' "$out/$name.log" | sed 's/^summary: /    /'
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "check-libvirt: run $run: ${#failed[@]} of ${#checks[@]} checks failed: ${failed[*]}"
    exit 1
fi
echo "check-libvirt: run $run: all ${#checks[@]} checks passed"
