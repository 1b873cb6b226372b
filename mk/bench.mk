# mk/bench.mk: the benchmark against libvirt's virThreadPool and GLib's
# GThreadPool (included by the top-level Makefile, which provides
# RELEASE_DIR and the `lib` target).
#
#   make bench         build, install the peers when missing, run every
#                      scenario for every implementation (7 repetitions),
#                      write bench/results/bench-<date>.{md,svg,json}
#   make bench-smoke   the same with tiny N and one repetition, results under
#                      target/bench/smoke; exits non-zero if a harness fails
#
# BENCH_ARGS passes options to bench/run.py (e.g. BENCH_ARGS="--reps 3
# --impls nde-pool,glib-exclusive --scenarios burst1,latency").

RELEASE_DIR ?= target/release
BENCH_BUILD_DIR ?= target/bench
BENCH_CC ?= cc
BENCH_CFLAGS ?= -O2 -g -std=gnu11 -Wall -Wextra -pthread
BENCH_HARNESS := $(BENCH_BUILD_DIR)/harness
BENCH_NDE_LIB ?= $(RELEASE_DIR)/libnodedev_events.so
BENCH_ARGS ?=

.PHONY: bench bench-smoke bench-peers

bench-peers:
	@bash bench/install-peers.sh

# Order-only on bench-peers: GLib's headers must be there before compiling.
$(BENCH_HARNESS): bench/harness.c bench/ring.c bench/ring.h \
		$(wildcard include/nodedev_events.h) | bench-peers
	@mkdir -p $(@D)
	$(BENCH_CC) $(BENCH_CFLAGS) -Iinclude -Ibench -o $@ bench/harness.c \
	    bench/ring.c $$(pkg-config --cflags --libs glib-2.0) -ldl

bench: lib bench-peers $(BENCH_HARNESS)
	python3 bench/run.py --harness $(BENCH_HARNESS) --lib $(BENCH_NDE_LIB) \
	    --out-dir bench/results $(BENCH_ARGS)

bench-smoke: lib bench-peers $(BENCH_HARNESS)
	python3 bench/run.py --smoke --require-nde --harness $(BENCH_HARNESS) \
	    --lib $(BENCH_NDE_LIB) --out-dir $(BENCH_BUILD_DIR)/smoke $(BENCH_ARGS)
