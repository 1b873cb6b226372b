#!/usr/bin/env python3
"""The pool's intake, ours (src/pool/intake.rs) against one built on
crossbeam-queue's SegQueue (src/pool/intake_crossbeam.rs, Cargo feature
`crossbeam-intake`): the same harness, the same pool, two builds of the
library, alternated repetition by repetition in one run.

Figures: S1 (burst of N jobs from 1 producer) and S2 (4 producers), jobs/s
and CPU per job; bytes per queued job (RSS growth over N queued jobs);
idle CPU of the pool's threads. Prints a Markdown table (medians) and
writes it to --out when given.

    python3 bench/intake_compare.py --ours target/release/libnodedev_events.so \
        --crossbeam target/crossbeam-intake/release/libnodedev_events.so
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

FIGURES = [
    # (label, scenario, harness args, metric, scale, decimals, better)
    ("S1: 1 producer, M jobs/s", "burst1",
     ["--scenario", "burst", "--producers", "1"], "jobs_per_s", 1e-6, 2, "high"),
    ("S1: CPU per job, ns", "burst1", None, "cpu_ns_per_job", 1, 1, "low"),
    ("S2: 4 producers, M jobs/s", "burst4",
     ["--scenario", "burst", "--producers", "4"], "jobs_per_s", 1e-6, 2, "high"),
    ("S2: CPU per job, ns", "burst4", None, "cpu_ns_per_job", 1, 1, "low"),
    ("bytes per queued job", "memory", ["--scenario", "memory"],
     "bytes_per_job", 1, 1, "low"),
    ("idle: CPU of the pool's threads, µs per s", "idle",
     ["--scenario", "idle"], "cpu_us_per_s", 1, 1, "low"),
    ("idle: wake-ups per s", "idle", None, "wakeups_per_s", 1, 1, "low"),
]


def run(harness, lib, args, timeout):
    cmd = [harness, "--impl", "nde-pool", "--lib", lib] + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"intake_compare: failed ({r.returncode}): {' '.join(cmd)}\n"
                 f"{r.stderr[-2000:]}")
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"intake_compare: no result line: {' '.join(cmd)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--harness", default="target/bench/harness")
    ap.add_argument("--ours", default="target/release/libnodedev_events.so")
    ap.add_argument("--crossbeam",
                    default="target/crossbeam-intake/release/libnodedev_events.so")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--idle-ms", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny N, one repetition (checks it runs)")
    ap.add_argument("--out", help="also write the table here")
    a = ap.parse_args()
    if a.smoke:
        a.n, a.idle_ms, a.reps = 20_000, 100, 1
    libs = {"ours": os.path.abspath(a.ours),
            "crossbeam": os.path.abspath(a.crossbeam)}
    for name, lib in libs.items():
        if not os.path.exists(lib):
            sys.exit(f"intake_compare: no {name} library at {lib}")
    scen = {}
    for _, s, args, *_ in FIGURES:
        if args is not None:
            extra = (["--idle-ms", str(a.idle_ms)] if s == "idle"
                     else ["--n", str(a.n)])
            scen[s] = args + extra + ["--warm", "1000"]
    results = {}
    load = os.getloadavg()
    for rep in range(a.reps):
        for s, args in scen.items():
            for name, lib in libs.items():
                print(f"intake_compare: rep {rep + 1}/{a.reps} {s} {name}",
                      file=sys.stderr, flush=True)
                res = run(a.harness, lib, args, 300)
                results.setdefault((s, name), []).append(res)
    when = datetime.datetime.now(datetime.timezone.utc)
    lines = [f"Intake comparison, {when:%Y-%m-%d %H:%M} UTC, {a.reps} "
             f"repetition(s) alternated, N = {a.n}, load average "
             f"{load[0]:.2f} at the start ({os.cpu_count()} CPUs); medians.",
             "", "| figure | ours (intake.rs) | crossbeam SegQueue | "
             "crossbeam / ours |", "|---|---|---|---|"]
    for label, s, _, metric, scale, dec, _better in FIGURES:
        med = {}
        for name in libs:
            vals = [r[metric] for r in results[(s, name)] if metric in r]
            med[name] = statistics.median(vals) * scale if vals else None
        o, c = med["ours"], med["crossbeam"]
        ratio = f"{c / o:.2f}" if o and c is not None else "–"
        fmt = lambda v: "–" if v is None else f"{v:.{dec}f}"
        lines.append(f"| {label} | {fmt(o)} | {fmt(c)} | {ratio} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
