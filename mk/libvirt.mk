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

.PHONY: libvirt check-libvirt

libvirt:
	libvirt/build.sh all
	libvirt/build-module-for-stock.sh

check-libvirt:
	libvirt/tests/run.sh $(CHECKS)
