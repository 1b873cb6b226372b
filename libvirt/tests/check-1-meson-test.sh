#!/bin/bash
# Check 1a: libvirt's own test suite (`meson test`) in both build trees; the
# ported tree must pass exactly the tests the stock tree passes. The two
# lists (name and result) are kept in $CHECK_OUT/meson-tests-{stock,ported}.txt.
set -euo pipefail

run_suite() {  # flavour build-dir
    local flavour=$1 build=$2
    nice -n 10 meson test -C "$build" --no-rebuild --num-processes 2 --print-errorlogs \
        > "$CHECK_OUT/meson-test-$flavour.log" 2>&1 || true
    # testlog.json: one JSON object per test; keep "name result", sorted
    python3 -c 'import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    print(t["name"].replace(" ", "_"), t["result"])' "$build/meson-logs/testlog.json" \
        | sort > "$CHECK_OUT/meson-tests-$flavour.txt"
    if [ ! -s "$CHECK_OUT/meson-tests-$flavour.txt" ]; then
        echo "no test results for $flavour"; tail -20 "$CHECK_OUT/meson-test-$flavour.log"; exit 1
    fi
}

counts() {
    awk '{ n[$2]++ } END { printf "%d OK, %d FAIL, %d SKIP, %d other", n["OK"], n["FAIL"], n["SKIP"], NR - n["OK"] - n["FAIL"] - n["SKIP"] }' "$1"
}

run_suite stock "$STOCK_BUILD"
run_suite ported "$PORTED_BUILD"

stock=$(counts "$CHECK_OUT/meson-tests-stock.txt")
ported=$(counts "$CHECK_OUT/meson-tests-ported.txt")
echo "stock:  $stock"
echo "ported: $ported"
if ! diff -u "$CHECK_OUT/meson-tests-stock.txt" "$CHECK_OUT/meson-tests-ported.txt"; then
    echo "summary: meson test differs: stock $stock; ported $ported"
    exit 1
fi
echo "summary: meson test: stock and ported pass the same list ($stock)"
