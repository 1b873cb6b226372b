# mk/libvirt.mk: the real libvirt 9.0 on nodedev-events (issue 11; not part
# of `make check`: a build takes ~3 min per tree, the checks several more).
#
#   make libvirt        Debian 12's libvirt source, built twice with the same
#                       options into target/libvirt/stock/ and
#                       target/libvirt/ported/ (libvirt/build.sh; idempotent,
#                       cached under target/libvirt-work/), then the
#                       ported node-device module for Debian's own
#                       libvirtd (libvirt/build-module-for-stock.sh, into
#                       target/libvirt/module-for-stock/; installs Debian's
#                       libvirt-daemon when missing; check 2 loads it)
#   make check-libvirt  every libvirt/tests/check-*.sh, stock and ported in
#                       the same run; logs in target/libvirt/checks/<run>/
#                       (CHECKS="1-meson-test 3-rpc-load" runs a subset,
#                       LIBVIRT_RUN_NAME names the run)
#   make check-libvirt-fresh
#                       `make libvirt && make check-libvirt` in a fresh
#                       clone of HEAD on a fresh Debian 12 system made by
#                       debootstrap (scripts/fresh-debian12.sh; the system
#                       is cached in target/fresh-debian12/ and copied
#                       afresh for each run; the run is named
#                       fresh-debian12-<commit>)

.PHONY: libvirt check-libvirt check-libvirt-fresh

libvirt:
	libvirt/build.sh all
	libvirt/build-module-for-stock.sh

check-libvirt:
	libvirt/tests/run.sh $(CHECKS)

check-libvirt-fresh:
	scripts/fresh-debian12.sh -- 'make libvirt && LIBVIRT_RUN_NAME=fresh-debian12-$$(git rev-parse --short HEAD) make check-libvirt'
