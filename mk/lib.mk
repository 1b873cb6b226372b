# mk/lib.mk: the C libraries (included by the top-level Makefile, which
# provides RELEASE_DIR, CARGO and CC).
#
#   make lib    $(RELEASE_DIR)/libnodedev_events.a    cargo rustc --crate-type staticlib
#               $(RELEASE_DIR)/libnodedev_events.so   linked from that archive (below)
#               $(RELEASE_DIR)/libnodedev_events.so.0 -> libnodedev_events.so
#
# The crate's own library target is an rlib: a Rust dependent compiles and
# links nothing else. The C artifacts are made here instead, with `cargo
# rustc --crate-type`, which is part of cargo (no cargo-c to install; the
# packaging builds with Debian's cargo-web, and bookworm's cargo-c 0.9.14
# embeds a cargo too old for this crate's Cargo.lock).
#
# The shared library is linked by the C compiler from the archive, not by
# rustc as a cdylib: rustc hands every cdylib link an anonymous version
# script of its own, which GNU ld refuses to combine with named version
# nodes ("anonymous version tag cannot be combined with other version
# tags") and lld lets win (every symbol unversioned). Here
# libnodedev_events.map is the only version script: the nde_ functions are
# exported, bound to their version nodes, and everything else (the Rust
# standard library, the dependencies) is local. The soname carries the C ABI
# major (docs/abi.md), not the crate's version; `-z nodelete` keeps a
# host's dlclose from unmapping code a worker thread may still run; `-z
# defs` makes a missing native library a link error here rather than a
# load error later.
#
# Variables: NDE_CARGO_PROFILE (release; `dev` builds target/debug, with
# RELEASE_DIR=target/debug), NDE_CARGO_FLAGS (e.g. --features ...), LDFLAGS
# (appended to the link: a distribution's hardening flags).

NDE_CARGO_PROFILE ?= release
NDE_CARGO_FLAGS ?=
NDE_SOVERSION := 0
NDE_LIB_A := $(RELEASE_DIR)/libnodedev_events.a
NDE_LIB_SO := $(RELEASE_DIR)/libnodedev_events.so
NDE_VERSION_SCRIPT := libnodedev_events.map
# What the archive needs from the system (`rustc --print native-static-libs`;
# the same list as pkg-config's Libs.private and tests/ctests.rs's).
NDE_NATIVE_LIBS := -ludev -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
NDE_SO_LDFLAGS := -shared -Wl,-soname,libnodedev_events.so.$(NDE_SOVERSION) \
    -Wl,-z,nodelete -Wl,-z,relro -Wl,-z,now -Wl,-z,defs -Wl,--gc-sections \
    -Wl,--version-script=$(NDE_VERSION_SCRIPT)

.PHONY: lib

lib: $(NDE_LIB_SO)
	@ln -sfn libnodedev_events.so $(RELEASE_DIR)/libnodedev_events.so.$(NDE_SOVERSION)

# Cargo runs every time and decides; the archive's time changes only when
# it was rebuilt, and only then is the shared library linked again.
$(NDE_LIB_A): nde-cargo-always
	$(CARGO) rustc --profile $(NDE_CARGO_PROFILE) --lib --crate-type staticlib $(NDE_CARGO_FLAGS)

nde-cargo-always:

# Written beside and renamed over, so a program running from the build
# tree never sees a half-written library.
$(NDE_LIB_SO): $(NDE_LIB_A) $(NDE_VERSION_SCRIPT)
	$(CC) $(NDE_SO_LDFLAGS) $(LDFLAGS) -o $@.tmp \
	    -Wl,--whole-archive $(NDE_LIB_A) -Wl,--no-whole-archive $(NDE_NATIVE_LIBS)
	mv -f $@.tmp $@
