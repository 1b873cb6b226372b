# mk/bench.mk: the benchmark against libvirt's virThreadPool and GLib's
# GThreadPool (included by the top-level Makefile, which provides
# RELEASE_DIR; mk/lib.mk the `lib` target).
#
#   make bench         build, install the peers when missing, run every
#                      scenario for every implementation (7 repetitions),
#                      beside the ceilings (bench/ring.c, the inline floor,
#                      the bare netlink receiver of bench/monitor/
#                      uevent_bench.c, libudev's own loop) and the keyed-
#                      dispatch workload (bench/keyed.c); write
#                      bench/results/bench-<date>.{md,svg,json}
#   make bench-intake  (also run by `make bench`) the pool's intake against
#                      one on crossbeam's SegQueue: bench/intake_compare.py,
#                      bench/results/intake-<date>.md
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
BENCH_UEVENT := $(BENCH_BUILD_DIR)/uevent-bench
BENCH_KEYED := $(BENCH_BUILD_DIR)/keyed-bench
BENCH_TOOLS := $(BENCH_HARNESS) $(BENCH_UEVENT) $(BENCH_KEYED)
BENCH_RUN_ARGS = --harness $(BENCH_HARNESS) --uevent-bench $(BENCH_UEVENT) \
    --keyed-bench $(BENCH_KEYED) --lib $(BENCH_NDE_LIB)
BENCH_NDE_LIB ?= $(RELEASE_DIR)/libnodedev_events.so
BENCH_ARGS ?=

.PHONY: bench bench-smoke bench-peers bench-intake

bench-peers:
	@bash bench/install-peers.sh

# Order-only on bench-peers: GLib's headers must be there before compiling.
$(BENCH_HARNESS): bench/harness.c bench/ring.c bench/ring.h \
		$(wildcard include/nodedev_events.h) | bench-peers
	@mkdir -p $(@D)
	$(BENCH_CC) $(BENCH_CFLAGS) -Iinclude -Ibench -o $@ bench/harness.c \
	    bench/ring.c $$(pkg-config --cflags --libs glib-2.0) -ldl

# The monitor's ceilings: libudev is linked (its own receive loop is one of
# them); our library is dlopen'ed as in the harness.
$(BENCH_UEVENT): bench/monitor/uevent_bench.c \
		$(wildcard include/nodedev_events.h) | bench-peers
	@mkdir -p $(@D)
	$(BENCH_CC) $(BENCH_CFLAGS) -Iinclude -o $@ bench/monitor/uevent_bench.c \
	    $$(pkg-config --cflags --libs libudev) -ldl

$(BENCH_KEYED): bench/keyed.c bench/ring.c bench/ring.h
	@mkdir -p $(@D)
	$(BENCH_CC) $(BENCH_CFLAGS) -Ibench -o $@ bench/keyed.c bench/ring.c -ldl

bench: lib bench-peers $(BENCH_TOOLS)
	python3 bench/run.py $(BENCH_RUN_ARGS) --out-dir bench/results $(BENCH_ARGS)
	$(MAKE) bench-intake

# The intake comparison (docs/benchmarks.md): the library built a second
# time with the benchmark feature `crossbeam-intake` (the pool's intake on
# crossbeam's SegQueue), both run by the same harness, alternated.
BENCH_CROSSBEAM_DIR ?= target/crossbeam-intake
bench-intake: lib $(BENCH_HARNESS)
	CARGO_TARGET_DIR=$(BENCH_CROSSBEAM_DIR) $(MAKE) --no-print-directory lib \
	    RELEASE_DIR=$(BENCH_CROSSBEAM_DIR)/release NDE_CARGO_FLAGS="--features crossbeam-intake"
	python3 bench/intake_compare.py --harness $(BENCH_HARNESS) \
	    --ours $(BENCH_NDE_LIB) \
	    --crossbeam $(BENCH_CROSSBEAM_DIR)/release/libnodedev_events.so \
	    --out bench/results/intake-$$(date -u +%Y%m%d-%H%M).md

bench-smoke: lib bench-peers $(BENCH_TOOLS)
	python3 bench/run.py --smoke --require-nde $(BENCH_RUN_ARGS) \
	    --out-dir $(BENCH_BUILD_DIR)/smoke $(BENCH_ARGS)
