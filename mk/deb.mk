# mk/deb.mk: Debian packages (included by the top-level Makefile).
#
#   make deb        target/debian/*.deb: libnodedev-events0,
#                   libnodedev-events-dev, nodedev-events-tools (and their
#                   -dbgsym), built by dpkg-buildpackage -us -uc -b with
#                   debian/ (debhelper) and Debian's Rust toolchain
#                   (rustc-web/cargo-web), offline from crates vendored into
#                   the copy of the tree it builds; then lintian, which must
#                   report no error and no warning
#   make check-deb  in a fresh Debian 12 (scripts/fresh-debian12.sh), from a
#                   fresh clone: make deb, then scripts/check-deb.sh (dpkg -i
#                   of the three packages, a C client built with pkg-config
#                   and run, `man nde_pool_new_full`, nodedev-monitor)
#
# The tree is copied (tracked and untracked files, not ignored ones) to
# target/debian/nodedev-events-<version>/, so dpkg-buildpackage's clean
# step and its output (written next to the source directory) stay in
# target/debian. Installs its build dependencies when missing.

NDE_DEB_DIR := target/debian
NDE_DEB_SRC = $(NDE_DEB_DIR)/nodedev-events-$(NDE_VERSION)
NDE_DEB_BUILD_DEPS := build-essential debhelper dpkg-dev cargo-web rustc-web libudev-dev pkgconf doxygen lintian
NDE_DEB_PACKAGES := libnodedev-events0 libnodedev-events-dev nodedev-events-tools

.PHONY: deb check-deb

deb:
	@scripts/install-deps.sh $(NDE_DEB_BUILD_DEPS)
	rm -rf $(NDE_DEB_DIR)
	mkdir -p $(NDE_DEB_SRC)
	git ls-files -z --cached --others --exclude-standard | \
	    tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C $(NDE_DEB_SRC)
	cd $(NDE_DEB_SRC) && $(CARGO) vendor --locked --quiet vendor > /dev/null
	cd $(NDE_DEB_SRC) && nice dpkg-buildpackage -us -uc -b > ../build.log 2>&1 || \
	    { tail -40 $(CURDIR)/$(NDE_DEB_DIR)/build.log; exit 1; }
	ls -l $(NDE_DEB_DIR)/*.deb
	lintian --fail-on error,warning --display-info $(foreach p,$(NDE_DEB_PACKAGES),$(NDE_DEB_DIR)/$(p)_*.deb)

# debootstrap through install-deps.sh, which fetches the package lists
# first on a machine that has none (fresh-debian12.sh's own install does not).
check-deb:
	@scripts/install-deps.sh debootstrap
	scripts/fresh-debian12.sh -- 'make deb && scripts/check-deb.sh --disposable-system target/debian'
