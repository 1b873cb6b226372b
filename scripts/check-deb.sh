#!/bin/bash
# scripts/check-deb.sh: the Debian packages of `make deb` used as a C
# programmer uses them. Meant for a fresh Debian 12 right after `make deb`
# (`make check-deb` runs `make deb && scripts/check-deb.sh` in one, through
# scripts/fresh-debian12.sh); needs root.
#
#   scripts/check-deb.sh --disposable-system [DIR]
#
# DIR: where the .debs are (target/debian). It purges and installs packages:
# --disposable-system says this system is a throwaway one.
#
# 1. libudev-dev (a build dependency) is purged first, so the -dev package's
#    own Depends must bring back what a static client links with.
# 2. dpkg -i of libnodedev-events0, libnodedev-events-dev and
#    nodedev-events-tools; apt-get -f install for their dependencies from
#    Debian.
# 3. A C client built with `pkg-config --cflags --libs nodedev-events`
#    (both headers, the pool, the dlopen table) and run: it must load the
#    packaged /usr/lib/<multiarch>/libnodedev_events.so.0; the same client
#    linked to the packaged .a with `pkg-config --static`.
# 4. The installed library's symbols carry their version (readelf).
# 5. `man nde_pool_new_full` shows the function's documentation, `man
#    nodedev-monitor` its page, and the tool prints the device tree.
set -euo pipefail

fail() { echo "check-deb: FAILED: $*" >&2; exit 1; }
log() { echo "check-deb: $*"; }
[ "${1:-}" = --disposable-system ] ||
    fail "it purges and installs packages: run it in a throwaway system (make check-deb), with --disposable-system"
dir=${2:-target/debian}
[ "$(id -u)" = 0 ] || fail "run as root"
debs=()
for p in libnodedev-events0 libnodedev-events-dev nodedev-events-tools; do
    f=$(ls "$dir"/${p}_*.deb 2>/dev/null | head -n 1)
    [ -n "$f" ] || fail "no ${p}_*.deb in $dir (run make deb)"
    debs+=("$f")
done
export DEBIAN_FRONTEND=noninteractive

log "purging libudev-dev (the -dev package must depend on it)"
apt-get purge -y -qq libudev-dev > /dev/null

log "dpkg -i ${debs[*]##*/}"
dpkg -i "${debs[@]}" || log "dpkg -i left dependencies to install"
apt-get install -f -y -qq --no-install-recommends > /dev/null
# What a C programmer has besides the packages: a compiler, pkg-config, man.
apt-get install -y -qq --no-install-recommends gcc libc6-dev pkgconf man-db binutils > /dev/null
for p in libnodedev-events0 libnodedev-events-dev nodedev-events-tools libudev-dev; do
    dpkg-query -W -f='${Status}' "$p" | grep -q "ok installed" || fail "$p is not installed"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/client.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <nodedev_events.h>
#include <nodedev_events_virt.h>

static int total;
static void add(void *jobdata, void *opaque)
{
    (void)opaque;
    total += *(int *)jobdata;
}

int main(void)
{
    if (strcmp(nde_version(), NDE_VERSION_STRING) != 0)
        return 1;
    const nde_api *api = nde_get_api(NDE_API_VERSION);
    if (!api || api->abi_version != NDE_API_VERSION)
        return 2;
    virThreadPool *pool = virThreadPoolNewFull(1, 1, 0, add, "client", NULL, NULL);
    if (!pool)
        return 3;
    static int data[10];
    for (int i = 0; i < 10; i++) {
        data[i] = i + 1;
        if (virThreadPoolSendJob(pool, 0, &data[i]) < 0)
            return 4;
    }
    if (api->pool_wait_idle(pool, -1) != NDE_OK)
        return 5;
    virThreadPoolFree(pool);
    if (total != 55)
        return 6;
    printf("client ok: nodedev-events %s\n", nde_version());
    return 0;
}
EOF

log "building a client with pkg-config --cflags --libs nodedev-events: $(pkg-config --cflags --libs nodedev-events)"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -pedantic "$work/client.c" -o "$work/client" \
    $(pkg-config --cflags --libs nodedev-events)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
# (ldd may name it through /lib, a link to /usr/lib on a merged-/usr system.)
loaded=$(ldd "$work/client" | awk '$1 == "libnodedev_events.so.0" {print $3}')
[ -n "$loaded" ] && [ "$(readlink -f "$loaded")" = "$(readlink -f "/usr/lib/$multiarch/libnodedev_events.so.0")" ] ||
    fail "the client does not load the packaged library: $(ldd "$work/client")"
out=$("$work/client") || fail "the client exited with $?"
log "$out"
[ "$out" = "client ok: nodedev-events $(pkg-config --modversion nodedev-events)" ] || fail "client said: $out"

log "the same client linked to the packaged static library"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror -pedantic "$work/client.c" -o "$work/client-static" \
    $(pkg-config --cflags nodedev-events) -l:libnodedev_events.a \
    $(pkg-config --static --libs-only-l nodedev-events | sed 's/-lnodedev_events//')
! ldd "$work/client-static" | grep -q libnodedev_events || fail "the static client links the .so"
"$work/client-static" > /dev/null || fail "the static client exited with $?"

lib=/usr/lib/$multiarch/libnodedev_events.so.0
unversioned=$(readelf --dyn-syms -W "$lib" | awk '$7 != "UND" && $8 ~ /^nde_/ && $8 !~ /@@NODEDEV_EVENTS_/ {print $8}')
[ -z "$unversioned" ] || fail "unversioned symbols in $lib: $unversioned"
log "$(readelf --dyn-syms -W "$lib" | grep -c '@@NODEDEV_EVENTS_') versioned nde_ symbols in $lib"

log "man nde_pool_new_full"
man -w nde_pool_new_full
page=$(MANWIDTH=100 man nde_pool_new_full 2>/dev/null)
grep -q "nde_pool_new_full (size_t min_workers" <<< "$page" || fail "man nde_pool_new_full lacks the declaration"
grep -q "Creates a pool and starts min_workers" <<< "$page" || fail "man nde_pool_new_full lacks the documentation"
MANWIDTH=100 man nodedev-monitor 2>/dev/null | grep -q "virsh nodedev-list" || fail "man nodedev-monitor"

log "nodedev-monitor --kernel --timeout 0.5"
tree=$(nodedev-monitor --kernel --timeout 0.5) || fail "nodedev-monitor exited with $?"
[ "$(head -n 1 <<< "$tree")" = computer ] || fail "nodedev-monitor printed: $(head -n 3 <<< "$tree")"
log "nodedev-monitor listed $(grep -c '+-' <<< "$tree") devices"
log "all checks passed"
