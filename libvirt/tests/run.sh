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
# LIBVIRT_VERSION (9.0 by default, or 11.3) chooses the release whose trees
# are checked (libvirt/build.sh's layout: 11.3's trees, its Debian daemon
# and its module for that daemon are under target/libvirt/11.3/, its runs
# under target/libvirt/11.3/checks/). A check meant for one release only
# prints "SKIP: <why>" and exits 77 for the other; the runner lists it as
# skipped, not passed.
#
# Environment given to each check: ROOT (repository), LIBVIRT_VERSION,
# STOCK and PORTED (the install trees), STOCK_BUILD / PORTED_BUILD and
# STOCK_SRC / PORTED_SRC (meson build and source dirs), NDE_DEBIAN_TREE
# (Debian's daemon of the release: "" = the machine's, for 9.0),
# NDE_MODULE_FOR_STOCK (the ported module for it), CHECK_OUT (its own
# output directory).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/../.." && pwd)
export LIBVIRT_VERSION=${LIBVIRT_VERSION:-9.0}
case "$LIBVIRT_VERSION" in
    9.0) work="$ROOT/target/libvirt-work" trees="$ROOT/target/libvirt" upstream=libvirt-9.0.0
         export NDE_DEBIAN_TREE= ;;
    11.3) work="$ROOT/target/libvirt-work/11.3" trees="$ROOT/target/libvirt/11.3" upstream=libvirt-11.3.0
          export NDE_DEBIAN_TREE="$trees/debian" ;;
    *) echo "check-libvirt: LIBVIRT_VERSION must be 9.0 or 11.3" >&2; exit 2 ;;
esac
export ROOT
export STOCK="$trees/stock" PORTED="$trees/ported"
export STOCK_BUILD="$work/build-stock" PORTED_BUILD="$work/build-ported"
export STOCK_SRC="$work/pristine/$upstream" PORTED_SRC="$work/ported-src/$upstream"
export NDE_MODULE_FOR_STOCK="$trees/module-for-stock"

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
out="$trees/checks/$run"
mkdir -p "$out"

checks=()
if [ $# -gt 0 ]; then
    for name in "$@"; do
        name=${name#check-}; checks+=("$here/check-${name%.sh}.sh")
    done
else
    for c in "$here"/check-*.sh; do checks+=("$c"); done
fi

echo "check-libvirt: libvirt $LIBVIRT_VERSION, run $run (commit $commit), logs in ${out#"$ROOT"/}"
failed=() skipped=()
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
    elif [ $rc -eq 77 ]; then
        echo "SKIP $name: $(grep -m1 '^SKIP: ' "$out/$name.log" | sed 's/^SKIP: //')"
        skipped+=("$name")
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
echo "check-libvirt: run $run: all $(( ${#checks[@]} - ${#skipped[@]} )) checks for libvirt $LIBVIRT_VERSION passed${skipped[*]:+ (not for this release: ${skipped[*]})}"
