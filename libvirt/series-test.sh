#!/bin/bash
# libvirt/series-test.sh: every patch of the libvirt 11.3 series
# (libvirt/patches-11.3/*.patch) builds and passes libvirt's `meson test`
# on its own, applied in order on top of stock 11.3.
#
# A git tree whose first commit is the stock source (Debian's 11.3 with
# Debian's patches, tag "stock") is reset to that commit; then, for the
# stock commit and after each `git am` of one patch: ninja (incremental,
# one build directory) and `meson test`. The build starts with the stock
# option set; once a patch has added the nodedev_events options, they are
# set as the ported build sets them (-Dnodedev_events=enabled
# -Dnodedev_events_threadpool=enabled). A patch passes when it applies,
# builds, and no test that passes on the stock commit fails after it (new
# tests must pass too). In a git tree libvirt's meson adds its
# syntax-check suite (make syntax-check's rules as tests): 19 of its rules
# fail on the stock commit itself (Debian's tarball in a fresh git tree),
# so stock's own failures are listed, not held against the series; every
# rule stock passes must still pass. Finally the whole
# series is applied with `patch -p1` onto a copy of the stock source: the
# result must equal the git tree (both ways of applying must work).
#
# The tree and build live in target/libvirt-work/11.3/series/, laid out
# like the stock build (../pristine/libvirt-11.3.0 from the build
# directory), so ccache serves the stock commit's objects from the stock
# build's. Log: target/libvirt/11.3/series-test/<run>/. Prints one line per
# patch and a total time.
#
# Usage: libvirt/series-test.sh [FIRST [LAST]]   (patch numbers; default all)
# Environment: JOBS (2), NICE (10).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
patches="$here/patches-11.3"
work="$root/target/libvirt-work/11.3"
series="$work/series"
src="$series/pristine/libvirt-11.3.0"
build="$series/build"
jobs=${JOBS:-2}
nice_cmd=(nice -n "${NICE:-10}")
first=${1:-1}
last=${2:-9999}
export CCACHE_BASEDIR="$work" CCACHE_NOHASHDIR=1

log() { echo "libvirt/series-test.sh: $*"; }
git_s() {
    git -C "$src" -c user.name="nodedev-events build" -c user.email="build@nodedev-events.invalid" \
        -c advice.detachedHead=false "$@"
}

list=("$patches"/*.patch)
[ -e "${list[0]}" ] || { echo "libvirt/series-test.sh: no patches in ${patches#"$root"/}" >&2; exit 1; }

start=$(date +%s)
# The source, our library (for pkg-config) and the packages.
LIBVIRT_VERSION=11.3 "$here/build.sh" prepare >/dev/null
export PKG_CONFIG_PATH="$work/nde/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

run=run-$(date -u +%Y%m%dT%H%M%SZ)-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
out="$root/target/libvirt/11.3/series-test/$run"
mkdir -p "$out"

# The stock git tree (made once, then reset).
if ! git -C "$src" rev-parse -q --verify refs/tags/stock >/dev/null 2>&1; then
    log "making the stock git tree ${src#"$root"/}"
    rm -rf "$series"
    mkdir -p "$(dirname "$src")"
    cp -a "$work/pristine/libvirt-11.3.0" "$src"
    rm -f "$src/.nde-unpacked"
    git_s init -q
    git_s add -A -f
    git_s commit -q -m "libvirt 11.3: Debian's source with Debian's patches (stock)"
    git_s tag stock
fi
git_s am --abort >/dev/null 2>&1 || true
git_s checkout -q -f --detach stock
git_s clean -q -f -d -x

# The stock option set: libvirt/build.sh's for 11.3 (written by prepare).
mapfile -t stock_options < "$work/stock-options.txt"
if [ ! -f "$build/build.ninja" ]; then
    rm -rf "$build"
    "${nice_cmd[@]}" meson setup "$build" "$src" "${stock_options[@]}" > "$out/setup.log" 2>&1 ||
        { tail -30 "$out/setup.log" >&2; exit 1; }
elif "${nice_cmd[@]}" meson configure "$build" 2>/dev/null | grep -q '^ *nodedev_events '; then
    # Left configured with the series' options by the last run: the stock
    # commit has no such options; set up afresh (ccache keeps it cheap).
    rm -rf "$build"
    "${nice_cmd[@]}" meson setup "$build" "$src" "${stock_options[@]}" > "$out/setup.log" 2>&1 ||
        { tail -30 "$out/setup.log" >&2; exit 1; }
fi

# Builds and tests the current commit; prints "built OK FAIL SKIP NEW secs"
# (NEW: tests failing now that pass on the stock commit, or new tests
# that fail). Writes the results to $out/results-<label>.txt.
build_and_test() {  # label
    local label=$1 t0 ok fail skip new
    t0=$(date +%s)
    if ! "${nice_cmd[@]}" ninja -C "$build" -j "$jobs" > "$out/ninja-$label.log" 2>&1; then
        echo "no - - - - $(( $(date +%s) - t0 ))"; return
    fi
    "${nice_cmd[@]}" meson test -C "$build" --no-rebuild --num-processes "$jobs" --print-errorlogs \
        > "$out/test-$label.log" 2>&1 || true
    read -r ok fail skip new < <(python3 -c 'import json, sys, os
res = {}
for line in open(sys.argv[1]):
    t = json.loads(line)
    r = t["result"]
    res[t["name"]] = "OK" if r in ("OK", "EXPECTEDFAIL") else r
with open(sys.argv[2], "w") as f:
    for name in sorted(res):
        f.write(name.replace(" ", "_") + " " + res[name] + "\n")
stock = {}
if os.path.exists(sys.argv[3]):
    for line in open(sys.argv[3]):
        name, r = line.split()
        stock[name] = r
new = sum(1 for name, r in res.items()
          if r not in ("OK", "SKIP") and stock.get(name.replace(" ", "_"), "OK") == "OK")
n = lambda k: sum(1 for r in res.values() if r == k)
print(n("OK"), len(res) - n("OK") - n("SKIP"), n("SKIP"), new)' \
        "$build/meson-logs/testlog.json" "$out/results-$label.txt" "$out/results-0000-stock.txt")
    echo "yes $ok $fail $skip $new $(( $(date +%s) - t0 ))"
}

status=0
printf '%-66s %6s %4s %5s %5s %4s %6s\n' patch builds ok fail skip new "s" | tee "$out/summary.txt"
report() {  # label built ok fail skip new secs
    printf '%-66s %6s %4s %5s %5s %4s %6s\n' "$@" | tee -a "$out/summary.txt"
    { [ "$2" = yes ] && [ "$6" = 0 ]; } || status=1
}

# shellcheck disable=SC2046
report "0000 stock 11.3" $(build_and_test 0000-stock)
options_set=no
for p in "${list[@]}"; do
    name=$(basename "$p" .patch)
    num=$((10#${name%%-*}))
    if [ "$num" -lt "$first" ]; then
        git_s am -q --whitespace=nowarn "$p" || { report "$name" "no-apply" - - - - -; break; }
        continue
    fi
    [ "$num" -gt "$last" ] && break
    if ! git_s am -q --whitespace=nowarn "$p" > "$out/am-$name.log" 2>&1; then
        git_s am --abort >/dev/null 2>&1 || true
        report "$name" "no-apply" - - - - -
        break
    fi
    if [ $options_set = no ] && grep -q "option('nodedev_events'" "$src/meson_options.txt"; then
        # (setup --reconfigure: `meson configure` knows only the options of
        # the last configure, and this patch has just added them)
        "${nice_cmd[@]}" meson setup --reconfigure "$build" "$src" \
            -Dnodedev_events=enabled -Dnodedev_events_threadpool=enabled \
            > "$out/configure-$name.log" 2>&1 || { report "$name" "no-configure" - - - - -; break; }
        options_set=yes
    fi
    # shellcheck disable=SC2046
    report "$name" $(build_and_test "$name")
done

# patch -p1 gives the same tree as git am.
if [ $status = 0 ] && [ "$last" = 9999 ]; then
    rm -rf "$series/by-patch"
    mkdir -p "$series/by-patch"
    cp -a "$work/pristine/libvirt-11.3.0" "$series/by-patch/libvirt-11.3.0"
    for p in "${list[@]}"; do
        patch -d "$series/by-patch/libvirt-11.3.0" -p1 -s --no-backup-if-mismatch < "$p" ||
            { log "patch -p1 fails on $(basename "$p")"; status=1; break; }
    done
    # (--no-dereference: libvirt's test data has symlink loops)
    if [ $status = 0 ] && ! diff -r -q --no-dereference -x .git -x .nde-unpacked "$series/by-patch/libvirt-11.3.0" "$src" > "$out/patch-vs-git-am.txt" 2>&1; then
        log "patch -p1 and git am give different trees:"; head "$out/patch-vs-git-am.txt"; status=1
    fi
    [ $status = 0 ] && log "patch -p1 gives the tree git am gives"
    rm -rf "$series/by-patch"
fi

secs=$(( $(date +%s) - start ))
log "${#list[@]} patches, $(( secs / 60 )) min $(( secs % 60 )) s; logs in ${out#"$root"/}"
if [ $status = 0 ]; then
    log "every patch applies, builds, and fails no test that stock passes"
    echo "stock's own failures: $(awk '$2 != "OK" && $2 != "SKIP" { printf "%s ", $1 }' "$out/results-0000-stock.txt")"
else
    log "FAILED"
fi
exit $status
