# nodedev-events: build, demo, tests, benchmarks and installation.
#
#   make run      build and run the demo (installs missing packages as root)
#   make check    every test: Rust, C (linked, static, dlopen, ASan/UBSan,
#                 valgrind), the header checks, and a smoke pass of the
#                 benchmark (so it never rots; it asserts no time)
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

.PHONY: all lib deps run check header clean

all: lib $(RELEASE_DIR)/pool-demo

deps:
	@scripts/install-deps.sh

lib:
	$(CARGO) build --release --lib
	@ln -sf libnodedev_events.so $(RELEASE_DIR)/libnodedev_events.so.0

$(RELEASE_DIR)/pool-demo: examples/pool_demo.c include/nodedev_events.h lib
	$(CC) $(DEMO_CFLAGS) $< -o $@ $(DEMO_LIBS)

run: deps all
	$(RELEASE_DIR)/pool-demo

check: deps
	$(CARGO) build --release
	$(CARGO) test --release
	$(MAKE) bench-smoke

header:
	NDE_UPDATE_HEADER=1 $(CARGO) test --release --test header

clean:
	$(CARGO) clean

-include mk/*.mk
