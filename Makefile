# nodedev-events: build, demo, tests, benchmarks and installation.
#
#   make run      build and run the demo, nodedev-monitor (installs missing
#                 packages as root); make run-pool: the pool on its own
#   make check    the lints (clippy, rustdoc), every test: Rust (with the
#                 doc tests and the Rust example's build), C (linked,
#                 static, dlopen, ASan/UBSan, valgrind), the header checks,
#                 and a smoke pass of the benchmark (so it never rots; it
#                 asserts no time)
#   make check-all
#                 make check, then the real libvirt built stock and ported
#                 and checked side by side (make libvirt, make
#                 check-libvirt; mk/libvirt.mk): every test there is, as
#                 root (the README's test command and CI's)
#   make bench    the benchmark against libvirt and GLib (mk/bench.mk)
#   make install  PREFIX=/usr/local DESTDIR= (mk/install.mk)

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
CC ?= cc
RELEASE_DIR := target/release
LIB_SO := $(RELEASE_DIR)/libnodedev_events.so
LIB_A := $(RELEASE_DIR)/libnodedev_events.a
DEMO_CFLAGS := -std=c11 -Wall -Wextra -Werror -pedantic -O2 -g -Iinclude
DEMO_LIBS := -L$(RELEASE_DIR) -Wl,-rpath,'$$ORIGIN' -lnodedev_events -lpthread

.PHONY: all lib deps run run-pool check check-all check-debug check-loom lint header clean

all: lib $(RELEASE_DIR)/pool-demo $(RELEASE_DIR)/nodedev-monitor

deps:
	@scripts/install-deps.sh

lib:
	$(CARGO) build --release --lib
	@ln -sf libnodedev_events.so $(RELEASE_DIR)/libnodedev_events.so.0

$(RELEASE_DIR)/pool-demo: examples/pool_demo.c include/nodedev_events.h lib
	$(CC) $(DEMO_CFLAGS) $< -o $@ $(DEMO_LIBS)

# The main demo: nodedev-monitor (tools/nodedev-monitor.c, built by
# mk/install.mk) with a veth pair hot-plugged in a private namespace.
run: deps all
	scripts/demo.sh $(RELEASE_DIR)/nodedev-monitor $(MONITOR_ARGS)

# The pool on its own: ordered jobs from 4 producers, freed exactly once.
run-pool: deps all
	$(RELEASE_DIR)/pool-demo

check: deps
	$(MAKE) lint
	$(CARGO) build --release
	$(CARGO) test --release
	$(MAKE) check-debug
	$(MAKE) check-loom
	$(MAKE) bench-smoke

# Sequential on purpose: the libvirt checks measure, so nothing else runs
# beside them.
check-all:
	$(MAKE) check
	$(MAKE) libvirt
	$(MAKE) check-libvirt

# The fast Rust tests again on a debug build, where integer overflow panics
# (a counter that wraps silently in release fails here).
check-debug:
	$(CARGO) test --lib --test pool --test events --test faults --test model

# Lints a reviewer runs: clippy with warnings as errors (every target:
# library, tests, examples), and rustdoc with warnings as errors (with
# missing_docs on the public API). Doc tests and examples/monitor.rs's
# build are part of `cargo test`.
lint:
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

# The loom models (every interleaving, within a preemption bound, of the
# real code under --cfg loom, with its own target dir): the pool's intake,
# send/park/wake, wait_idle, stop and keyed scheduler, the registry's
# deregister handshake, the log callback's replacement handshake, and
# known-bad variants loom must catch
# (docs/reliability.md). ~30 s after the build.
check-loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test --release --lib loom_model

header:
	NDE_UPDATE_HEADER=1 $(CARGO) test --release --test header

clean:
	$(CARGO) clean

-include mk/*.mk
