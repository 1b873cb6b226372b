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

#
# libvirt 11.3 (issue 21; becomes the default once it passes every check):
#   make libvirt-11.3   Debian 13's libvirt 11.3 source built stock and
#                       ported (libvirt/patches-11.3, git am) into
#                       target/libvirt/11.3/{stock,ported}, Debian's 11.3
#                       daemon (bookworm-backports, extracted, never
#                       installed) into target/libvirt/11.3/debian, and the
#                       ported module for it into
#                       target/libvirt/11.3/module-for-stock
#   make check-libvirt-11.3
#                       the checks on those trees (logs in
#                       target/libvirt/11.3/checks/<run>/), then the
#                       series built and tested patch by patch
#                       (libvirt/series-test.sh; SERIES_TEST=0 skips it)

.PHONY: libvirt check-libvirt check-libvirt-fresh libvirt-11.3 check-libvirt-11.3

libvirt:
	libvirt/build.sh all
	libvirt/build-module-for-stock.sh

check-libvirt:
	libvirt/tests/run.sh $(CHECKS)

check-libvirt-fresh:
	scripts/fresh-debian12.sh -- 'make libvirt && LIBVIRT_RUN_NAME=fresh-debian12-$$(git rev-parse --short HEAD) make check-libvirt'

libvirt-11.3:
	LIBVIRT_VERSION=11.3 libvirt/build.sh all
	LIBVIRT_VERSION=11.3 libvirt/build-module-for-stock.sh

check-libvirt-11.3:
	LIBVIRT_VERSION=11.3 libvirt/tests/run.sh $(CHECKS)
	if [ "$${SERIES_TEST:-1}" != 0 ] && [ -x libvirt/series-test.sh ]; then libvirt/series-test.sh; fi
