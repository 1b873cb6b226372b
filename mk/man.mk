# mk/man.mk: the C API reference in man3 (included by the top-level
# Makefile).
#
#   make man3   target/man/man3/: nodedev_events.h.3 and
#               nodedev_events_virt.h.3 (the headers' comments, rendered
#               by doxygen with man/Doxyfile), a page per struct, and a
#               page per nde_ function, type and constant that is a `.so`
#               link to its header's page; `make install` installs them
#
# doxygen's MAN_LINKS also makes link pages for struct members and for the
# nde_api table's members (size.3, name.3, pool_new_full.3, ...) and one
# for the include directory: those names are not ours to take in a
# system's man3, so only nde_*/NDE_* pages and the headers' are kept.
# libvirt's names of the compat header (virThreadPool*) are left to its
# page too.

NDE_DOXYGEN_DIR := target/doxygen
NDE_MAN3_DIR := target/man/man3
NDE_DOXYGEN_INPUTS := man/Doxyfile include/nodedev_events.h include/nodedev_events_virt.h

.PHONY: man3

man3: $(NDE_MAN3_DIR)/.stamp

$(NDE_MAN3_DIR)/.stamp: $(NDE_DOXYGEN_INPUTS) mk/man.mk
	@command -v doxygen >/dev/null || { echo "man3: doxygen is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
	rm -rf $(NDE_DOXYGEN_DIR) $(NDE_MAN3_DIR)
	mkdir -p $(NDE_DOXYGEN_DIR) $(NDE_MAN3_DIR)
	NDE_VERSION=$(NDE_VERSION) NDE_DOXYGEN_DIR=$(NDE_DOXYGEN_DIR) doxygen man/Doxyfile
	cp $(NDE_DOXYGEN_DIR)/man/man3/nde_*.3 $(NDE_DOXYGEN_DIR)/man/man3/NDE_*.3 \
	    $(NDE_DOXYGEN_DIR)/man/man3/nodedev_events*.h.3 $(NDE_MAN3_DIR)/
	touch $@
