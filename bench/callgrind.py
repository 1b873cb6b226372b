#!/usr/bin/env python3
"""Where the instructions go, per job or per message (valgrind's callgrind).

For machines where perf has no hardware counters (the project's VMs:
`perf stat -e instructions true` says "not supported").

    bench/callgrind.py burst IMPL [--n N] [--producers P]
    bench/callgrind.py drain MODE [--n N]

Each profile is two runs under callgrind, with N and 2N items (jobs of a
burst, or messages of a drain); the harness and uevent-bench dump
callgrind's counters when their timed part ends (the receiver process, for
a drain), so what follows is left out.  The difference between the two
runs, per function, divided by N is the marginal cost of one item: start-up,
warm-up and the initial enumeration cancel out.  Costs the harness pays per
item outside its timed part (allocating the items before it) remain and are
named as such (`--data slab`, the default for bursts, puts the jobs in one
array so no allocation remains).  Valgrind runs one thread at a time: this shows work
(instructions), not contention, cache misses or wake-up latency.

Prints: instructions per item in total, then per function (self cost),
largest first.  Data in target/bench/callgrind/.  Python 3 standard library.
"""
import argparse
import glob
import os
import re
import subprocess
import sys

OUT = "target/bench/callgrind"
LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.*)$")


def run(kind, what, n, producers, lib, data):
    tag = f"{kind}-{what}-{n}"
    for f in glob.glob(os.path.join(OUT, tag + ".*")):
        os.unlink(f)
    out = os.path.join(OUT, tag + ".%p")
    if kind == "burst":
        cmd = ["target/bench/harness", "--impl", what, "--lib", lib,
               "--scenario", "burst", "--n", str(n), "--producers",
               str(producers), "--warm", "1000", "--data", data]
    else:
        cmd = ["target/bench/uevent-bench", "--mode", what, "--lib", lib,
               "--n", str(n)]
    r = subprocess.run(["valgrind", "--tool=callgrind", "--dump-instr=no",
                        f"--callgrind-out-file={out}"] + cmd,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"callgrind.py: {' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    # the dump at the end of the timed part: suffix .1
    dumps = glob.glob(os.path.join(OUT, tag + ".*.1"))
    if len(dumps) != 1:
        sys.exit(f"callgrind.py: expected one dump of the timed part, got "
                 f"{dumps}")
    return self_costs(dumps[0])


OBJ = {}  # function -> the object file it is in, when callgrind says


def self_costs(path):
    """function -> self instructions, and the program total."""
    r = subprocess.run(["callgrind_annotate", "--inclusive=no",
                        "--threshold=100", "--auto=no", path],
                       capture_output=True, text=True, check=True)
    costs, total = {}, 0
    for line in r.stdout.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        v = int(m.group(1).replace(",", ""))
        name = m.group(2).strip()
        if name == "PROGRAM TOTALS":
            total = v
            continue
        # "file:function [object]" -> function (the same function appears
        # once per source file its inlined code came from: summed)
        fn = name.split(" [")[0]
        fn = fn.split(":", 1)[1] if re.match(r"^[^:]*\.\w+:", fn) else fn
        if " [" in name:
            obj = os.path.basename(name.split(" [", 1)[1].rstrip("]"))
            OBJ.setdefault(fn, obj)
            if fn.startswith("???"):  # no symbols: say where
                fn = f"{fn} in {obj}"
                OBJ.setdefault(fn, obj)
        costs[fn] = costs.get(fn, 0) + v
    return costs, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["burst", "drain"])
    ap.add_argument("what", help="harness implementation or uevent-bench "
                    "drain mode")
    ap.add_argument("--n", type=int, help="items of the smaller run "
                    "(burst 100000, drain 5000)")
    ap.add_argument("--producers", type=int, default=1)
    ap.add_argument("--data", choices=["slab", "malloc"], default="slab",
                    help="burst: jobs in one array (default: the hand-off "
                    "alone), or one malloc each, freed by the job (as in "
                    "make bench: adds what glibc costs, the same for all)")
    ap.add_argument("--lines", type=int, default=25)
    ap.add_argument("--lib", default=os.environ.get(
        "BENCH_NDE_LIB", "target/release/libnodedev_events.so"))
    a = ap.parse_args()
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    os.makedirs(OUT, exist_ok=True)
    n = a.n or (100_000 if a.kind == "burst" else 5000)
    c1, t1 = run(a.kind, a.what, n, a.producers, a.lib, a.data)
    c2, t2 = run(a.kind, a.what, 2 * n, a.producers, a.lib, a.data)
    diff = {f: (c2.get(f, 0) - c1.get(f, 0)) / n for f in set(c1) | set(c2)}
    per = (t2 - t1) / n
    how = f", --data {a.data}" if a.kind == "burst" else ""
    print(f"{a.kind} {a.what}: {per:.0f} instructions per item "
          f"(callgrind, runs of {n} and {2 * n}, difference / {n}{how})")
    by_obj = {}
    for f, v in diff.items():
        obj = OBJ.get(f) or ("libnodedev_events.so" if "nodedev_events" in f
                             or "alloc::" in f or "core::" in f
                             or "hashbrown" in f else "?")
        by_obj[obj] = by_obj.get(obj, 0) + v
    objs = sorted(by_obj.items(), key=lambda kv: -kv[1])
    print("by object: " + ", ".join(f"{o} {v:.0f}" for o, v in objs
                                    if v >= 0.5))
    for f, v in sorted(diff.items(), key=lambda kv: -kv[1])[:a.lines]:
        if v < 0.5:
            break
        print(f"{100 * v / per:6.1f}% {v:9.1f}  {f}")


if __name__ == "__main__":
    main()
