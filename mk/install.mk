# mk/install.mk: installation and the C examples (included by the top-level
# Makefile, which provides RELEASE_DIR, CARGO and CC; mk/lib.mk the `lib`
# target).
#
#   make install    build, then install under $(DESTDIR)$(PREFIX):
#                     lib/libnodedev_events.so.X.Y.Z (+ .so.X and .so links)
#                     lib/libnodedev_events.a
#                     include/nodedev_events.h, include/nodedev_events_virt.h
#                     lib/pkgconfig/nodedev-events.pc (from nodedev-events.pc.in)
#                     bin/nodedev-monitor, share/man/man1/nodedev-monitor.1
#                     share/man/man3/*.3 (the C API reference, mk/man.mk)
#                     (when they have been built / exist)
#   make uninstall  remove exactly those files (same variables)
#   make tool       build tools/nodedev-monitor.c -> target/release/nodedev-monitor
#   make run-monitor  run it (MONITOR_ARGS="--timeout 10 --subsystem net")
#   make examples   build examples/*.c (target/release/libvirt-port,
#                   target/release/plugin-host, target/release/keyed-driver)
#   make check-examples  build and run the examples' self tests
#
# Variables: PREFIX (/usr/local), DESTDIR (empty), LIBDIR ($(PREFIX)/lib),
# INCLUDEDIR ($(PREFIX)/include), BINDIR ($(PREFIX)/bin), MANDIR
# ($(PREFIX)/share/man), PKGCONFIGDIR ($(LIBDIR)/pkgconfig).
# LDCONFIG (ldconfig) runs after a root install without DESTDIR, so that
# the loader finds the new soname in ld.so.conf directories such as
# /usr/local/lib; LDCONFIG=true skips it. NDE_INSTALL_DEPS (lib, plus the
# monitor tool when its source exists) is what `install` builds first;
# empty installs what is already built. (The man3 pages need doxygen.)

RELEASE_DIR ?= target/release
PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALL ?= install
LDCONFIG ?= ldconfig

# The package version, from Cargo.toml: the file name of the installed
# library carries it; its soname carries the C ABI major, NDE_SOVERSION
# (mk/lib.mk, docs/abi.md).
NDE_VERSION := $(shell sed -n 's/^version = "\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
NDE_SO_REAL = libnodedev_events.so.$(NDE_VERSION)
NDE_SO_NAME = libnodedev_events.so.$(NDE_SOVERSION)
NDE_HEADERS := include/nodedev_events.h include/nodedev_events_virt.h
NDE_TOOL := $(RELEASE_DIR)/nodedev-monitor
NDE_TOOL_SRC := $(firstword $(wildcard tools/nodedev-monitor.c examples/nodedev-monitor.c))
NDE_MAN := man/nodedev-monitor.1
NDE_INSTALL_DEPS ?= lib $(if $(NDE_TOOL_SRC),$(NDE_TOOL)) man3
# The man3 pages as generated (evaluated when used, after `man3` ran).
nde_man3_pages = $(notdir $(wildcard $(NDE_MAN3_DIR)/*.3))

# pkg-config paths relative to ${prefix} where possible, so that
# `pkg-config --define-prefix` can relocate a staged tree.
nde_pc_rel = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

.PHONY: install uninstall examples check-examples

install: $(NDE_INSTALL_DEPS)
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 0755 $(RELEASE_DIR)/libnodedev_events.so $(DESTDIR)$(LIBDIR)/$(NDE_SO_REAL)
	ln -sfn $(NDE_SO_REAL) $(DESTDIR)$(LIBDIR)/$(NDE_SO_NAME)
	ln -sfn $(NDE_SO_NAME) $(DESTDIR)$(LIBDIR)/libnodedev_events.so
	$(INSTALL) -m 0644 $(RELEASE_DIR)/libnodedev_events.a $(DESTDIR)$(LIBDIR)/libnodedev_events.a
	$(INSTALL) -m 0644 $(NDE_HEADERS) $(DESTDIR)$(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' \
	    -e 's|@LIBDIR@|$(call nde_pc_rel,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(call nde_pc_rel,$(INCLUDEDIR))|g' \
	    -e 's|@VERSION@|$(NDE_VERSION)|g' \
	    nodedev-events.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/nodedev-events.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/nodedev-events.pc
	@if [ -x $(NDE_TOOL) ]; then \
	    echo "$(INSTALL) -D -m 0755 $(NDE_TOOL) $(DESTDIR)$(BINDIR)/nodedev-monitor"; \
	    $(INSTALL) -D -m 0755 $(NDE_TOOL) $(DESTDIR)$(BINDIR)/nodedev-monitor; \
	fi
	@if [ -f $(NDE_MAN) ]; then \
	    echo "$(INSTALL) -D -m 0644 $(NDE_MAN) $(DESTDIR)$(MANDIR)/man1/nodedev-monitor.1"; \
	    $(INSTALL) -D -m 0644 $(NDE_MAN) $(DESTDIR)$(MANDIR)/man1/nodedev-monitor.1; \
	fi
	@if [ -n "$(nde_man3_pages)" ]; then \
	    echo "$(INSTALL) -m 0644 $(NDE_MAN3_DIR)/*.3 $(DESTDIR)$(MANDIR)/man3/"; \
	    $(INSTALL) -d $(DESTDIR)$(MANDIR)/man3 && \
	    $(INSTALL) -m 0644 $(addprefix $(NDE_MAN3_DIR)/,$(nde_man3_pages)) $(DESTDIR)$(MANDIR)/man3/; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v $(LDCONFIG) >/dev/null; then \
	    echo "$(LDCONFIG)"; $(LDCONFIG); \
	fi

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(NDE_SO_REAL) \
	      $(DESTDIR)$(LIBDIR)/$(NDE_SO_NAME) \
	      $(DESTDIR)$(LIBDIR)/libnodedev_events.so \
	      $(DESTDIR)$(LIBDIR)/libnodedev_events.a \
	      $(addprefix $(DESTDIR)$(INCLUDEDIR)/,$(notdir $(NDE_HEADERS))) \
	      $(DESTDIR)$(PKGCONFIGDIR)/nodedev-events.pc \
	      $(DESTDIR)$(BINDIR)/nodedev-monitor \
	      $(DESTDIR)$(MANDIR)/man1/nodedev-monitor.1 \
	      $(addprefix $(DESTDIR)$(MANDIR)/man3/,$(nde_man3_pages))
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v $(LDCONFIG) >/dev/null; then \
	    echo "$(LDCONFIG)"; $(LDCONFIG); \
	fi

# ---- the nodedev-monitor tool ----------------------------------------------
# Public header and shared library only. RUNPATH $ORIGIN finds the library
# next to it in target/release, $ORIGIN/../lib next to it once installed.

NDE_TOOL_CFLAGS ?= -std=c11 -Wall -Wextra -Werror -pedantic -O2 -g -Iinclude
NDE_TOOL_LIBS = -L$(RELEASE_DIR) -Wl,-rpath,'$$ORIGIN:$$ORIGIN/../lib' -lnodedev_events -lpthread

.PHONY: tool run-monitor

ifneq ($(NDE_TOOL_SRC),)
$(NDE_TOOL): $(NDE_TOOL_SRC) include/nodedev_events.h lib
	$(CC) $(NDE_TOOL_CFLAGS) $(NDE_TOOL_SRC) -o $@ $(NDE_TOOL_LIBS)

tool: $(NDE_TOOL)

# The demo: the inventory, then live events until Ctrl-C.
run-monitor: $(NDE_TOOL)
	$(NDE_TOOL) $(MONITOR_ARGS)
endif

# ---- examples --------------------------------------------------------------

NDE_EXAMPLE_CFLAGS ?= -std=c11 -Wall -Wextra -Werror -pedantic -O2 -g -Iinclude
NDE_EXAMPLE_LIBS = -L$(RELEASE_DIR) -Wl,-rpath,'$$ORIGIN' -lnodedev_events -ludev -lpthread

$(RELEASE_DIR)/libvirt-port: examples/libvirt_port.c include/nodedev_events.h lib
	$(CC) $(NDE_EXAMPLE_CFLAGS) $< -o $@ $(NDE_EXAMPLE_LIBS)

# Not linked to the library: it dlopen()s it and resolves nde_get_api only.
$(RELEASE_DIR)/plugin-host: examples/plugin_host.c include/nodedev_events.h
	@mkdir -p $(@D)
	$(CC) $(NDE_EXAMPLE_CFLAGS) $< -o $@ -ldl

$(RELEASE_DIR)/keyed-driver: examples/keyed_driver.c include/nodedev_events.h lib
	$(CC) $(NDE_EXAMPLE_CFLAGS) $< -o $@ $(NDE_EXAMPLE_LIBS)

examples: $(RELEASE_DIR)/libvirt-port $(RELEASE_DIR)/plugin-host $(RELEASE_DIR)/keyed-driver

check-examples: examples
	$(RELEASE_DIR)/libvirt-port --self-test
	$(RELEASE_DIR)/plugin-host $(RELEASE_DIR)/libnodedev_events.so
	$(RELEASE_DIR)/keyed-driver --self-test
