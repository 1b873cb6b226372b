#!/usr/bin/env python3
"""Run the pool/events benchmark and write its report.

Every repetition of every scenario for every implementation is a fresh
process of bench/harness (see harness.c).  Repetitions are interleaved
(rep 1 of everything, then rep 2, ...) so that slow drifts of the machine hit
every implementation alike.  The report gives the median with min and max of
each figure, as a Markdown table printed to the terminal and written to
OUT_DIR/bench-<UTC date>.md, an SVG chart beside it, the raw runs as JSON,
and copies of the report and chart named latest.{md,svg}.

Python 3 standard library only.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys

import ceilings

IMPLS = ["libvirt", "glib", "glib-exclusive", "glib-full",
         "nde-pool", "nde-pool-keyed", "nde-events", "ring", "inline"]
PEERS = ["libvirt", "glib", "glib-exclusive", "glib-full"]
OURS = ["nde-pool", "nde-events"]
CEILINGS = ["ring", "inline"]
IMPL_NOTE = {
    "libvirt": "libvirt 9.0 `virThreadPoolNewFull(1, 1, 0, ...)`",
    "glib": "GLib `g_thread_pool_new(..., 1, exclusive=FALSE)`",
    "glib-exclusive": "GLib `g_thread_pool_new(..., 1, exclusive=TRUE)`",
    "glib-full": "GLib `g_thread_pool_new_full(..., item_free, 1, FALSE)`",
    "nde-pool": "ours: `nde_pool_new_full(1, 1, 0, ...)` + `send_job_full`",
    "nde-pool-keyed": "ours: the same pool, `nde_pool_send_job_keyed` with "
                      "keys 1..1000 in turn (issue 15: the cost of keyed "
                      "dispatch)",
    "nde-events": "ours: `nde_events` with one `NDE_EVENT_ANY` callback",
    "ring": "ceiling reference, not a product (`bench/ring.c`): a bounded "
            "lock-free MPSC pointer ring (65 536 slots), the worker spins "
            "5 µs on an empty ring, then parks on a futex",
    "inline": "floor: no hand-off, the producer runs the job itself "
              "(burst, 1 producer only)",
}
ALL_SCEN = {"burst1", "burst4", "latency", "latency-sleep", "memory",
            "shutdown", "idle"}
# what each implementation can run (the harness exits 77 for the rest)
SUPPORTS = {
    "ring": {"burst1", "burst4", "latency", "latency-sleep", "idle"},
    "inline": {"burst1"},
    "nde-pool-keyed": {"burst1", "burst4", "latency", "memory"},
}

FULL = dict(burst=1_000_000, latency=100_000, memory=1_000_000,
            shutdown=100_000, idle_ms=1000, warm=1000, delay_ms=100, reps=7,
            timeout=300,
            # uevent-bench: injected udev-group adds, latency probes
            uevents=100_000, probes=1000, uevent_reps=3,
            # keyed-bench: events, keys, handler cost, repetitions
            keyed_n=100_000, keyed_keys=1000, keyed_cost_us=100,
            keyed_reps=1,
            # uevent-bench --workers: injected adds, callback cost
            monw_n=10_000, monw_cost_us=100)
SMOKE = dict(burst=20_000, latency=2_000, memory=20_000, shutdown=2_000,
             idle_ms=100, warm=100, delay_ms=20, reps=1, timeout=15,
             uevents=2000, probes=50, uevent_reps=1,
             keyed_n=400, keyed_keys=50, keyed_cost_us=20, keyed_reps=1,
             monw_n=200, monw_cost_us=20)


def scenarios(p):
    """name -> harness arguments"""
    w = ["--warm", str(p["warm"])]
    return {
        "burst1": ["--scenario", "burst", "--n", str(p["burst"]),
                   "--producers", "1"] + w,
        "burst4": ["--scenario", "burst", "--n", str(p["burst"]),
                   "--producers", "4"] + w,
        "latency": ["--scenario", "latency", "--n", str(p["latency"]),
                    "--pong", "spin"] + w,
        "latency-sleep": ["--scenario", "latency", "--n", str(p["latency"]),
                          "--pong", "sem"] + w,
        "memory": ["--scenario", "memory", "--n", str(p["memory"])] + w,
        "shutdown": ["--scenario", "shutdown", "--n", str(p["shutdown"]),
                     "--release-delay-ms", str(p["delay_ms"])] + w,
        "idle": ["--scenario", "idle", "--idle-ms", str(p["idle_ms"])] + w,
    }


# (row label, scenario, metric, scale, decimals, better: "high"/"low"/None)
def rows(p):
    n_b, n_s = f"{p['burst']:,}".replace(",", " "), \
        f"{p['shutdown']:,}".replace(",", " ")
    return [
        (f"(1) burst of {n_b} jobs, 1 producer: M jobs/s",
         "burst1", "jobs_per_s", 1e-6, 2, "high"),
        (f"(2) burst of {n_b} jobs, 4 producers: M jobs/s",
         "burst4", "jobs_per_s", 1e-6, 2, "high"),
        ("(3) ping-pong, producer spins: p50 µs", "latency", "p50_us", 1, 2,
         "low"),
        ("(3) ping-pong, producer spins: p99 µs", "latency", "p99_us", 1, 2,
         "low"),
        ("(3) ping-pong, producer spins: p99.9 µs", "latency", "p999_us", 1,
         1, "low"),
        ("(3) ping-pong, producer sleeps: p50 µs", "latency-sleep", "p50_us",
         1, 1, "low"),
        ("(3) ping-pong, producer sleeps: p99 µs", "latency-sleep", "p99_us",
         1, 1, "low"),
        ("(3) ping-pong, producer sleeps: p99.9 µs", "latency-sleep",
         "p999_us", 1, 1, "low"),
        ("(4) memory per queued job: bytes", "memory", "bytes_per_job", 1, 1,
         "low"),
        (f"(5) shutdown, {n_s} queued: ran", "shutdown", "ran", 1, 0, None),
        (f"(5) shutdown, {n_s} queued: dropped", "shutdown", "dropped", 1, 0,
         None),
        (f"(5) shutdown, {n_s} queued: leaked", "shutdown", "leaked", 1, 0,
         "low"),
        ("(5) shutdown: ms from the running job's end to return",
         "shutdown", "ms_after_release", 1, 2, "low"),
        ("(6) idle: CPU of the library's threads, µs per s", "idle",
         "cpu_us_per_s", 1, 1, "low"),
        ("(6) idle: wake-ups per s", "idle", "wakeups_per_s", 1, 1, "low"),
        ("(6) idle: utime+stime from /proc (10 ms ticks), ms per s", "idle",
         "stat_ms_per_s", 1, 1, "low"),
        ("(7) CPU per job, 1 producer: ns", "burst1", "cpu_ns_per_job", 1, 0,
         "low"),
        ("(7) CPU per job, 4 producers: ns", "burst4", "cpu_ns_per_job", 1, 0,
         "low"),
    ]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def machine_info(harness, lib):
    info = {}
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
        info["memory"] = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    info["cpu"] = f"{cpu} x {os.cpu_count()}"
    info["kernel"] = platform.release()
    virt = sh("systemd-detect-virt 2>/dev/null")
    if virt:
        info["virtualization"] = virt
    osr = sh(". /etc/os-release 2>/dev/null && echo $PRETTY_NAME")
    if osr:
        info["os"] = osr
    info["cc"] = sh("cc --version | head -n1")
    info["rustc"] = sh("rustc --version")
    try:
        out = subprocess.run([harness, "--scenario", "version", "--lib", lib],
                             capture_output=True, text=True, timeout=30)
        info.update(json.loads(out.stdout.strip().splitlines()[-1]))
    except Exception as e:  # noqa: BLE001
        info["versions"] = f"unknown ({e})"
    commit = sh("git rev-parse --short HEAD")
    if commit:
        dirty = sh("git status --porcelain --untracked-files=no")
        info["commit"] = commit + (" (+ uncommitted changes)" if dirty
                                   else "")
    return info


def run_one(harness, lib, impl, args, timeout, nice=None):
    return run_cmd([harness, "--impl", impl, "--lib", lib] + args, timeout,
                   nice)


def run_cmd(cmd, timeout, nice=None):
    """Runs one measurement process: ("ok", its JSON line), ("skip", why)
    on exit 77, ("fail" | "timeout", why)."""
    def renice():  # in the child, before exec: only the harness is reniced
        if nice is not None:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout, preexec_fn=renice)
    except subprocess.TimeoutExpired:
        return "timeout", f"timed out after {timeout} s: {' '.join(cmd)}"
    if r.returncode == 77:
        return "skip", r.stderr.strip()
    if r.returncode != 0:
        how = (f"killed by signal {-r.returncode}" if r.returncode < 0
               else f"exit {r.returncode}")
        return "fail", f"{how}: {' '.join(cmd)}\n{r.stderr.strip()[-2000:]}"
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            return "ok", json.loads(line)
    return "fail", f"no result line: {' '.join(cmd)}"


def fmt(v, dec):
    if v is None:
        return "–"
    if dec == 0:
        return f"{v:,.0f}".replace(",", " ")
    return f"{v:.{dec}f}"


def aggregate(results, scen, metric, impl, scale=1.0):
    vals = [r[metric] * scale for r in results.get((scen, impl), [])
            if metric in r]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def cell(agg, dec, reps):
    if agg is None:
        return "–"
    med, lo, hi = agg
    if reps == 1 or (fmt(lo, dec) == fmt(hi, dec)):
        return fmt(med, dec)
    return f"{fmt(med, dec)} ({fmt(lo, dec)}–{fmt(hi, dec)})"


def targets(results, impls):
    """(target, measured, met) rows for the issue's targets."""
    out = []

    def med(scen, metric, impl):
        a = aggregate(results, scen, metric, impl)
        return a[0] if a else None

    def best_peer(scen, metric, high):
        vals = [(med(scen, metric, p), p) for p in PEERS if p in impls]
        vals = [v for v in vals if v[0] is not None]
        if not vals:
            return None, None
        return (max if high else min)(vals)

    for scen, label in (("burst1", "1 producer"), ("burst4", "4 producers")):
        bp, bpn = best_peer(scen, "jobs_per_s", True)
        for impl, factor in (("nde-pool", 3), ("nde-events", 2)):
            v = med(scen, "jobs_per_s", impl)
            if v is None or bp is None:
                continue
            out.append((f"{impl} burst, {label}: >= {factor}x the best peer "
                        f"({bpn}, {bp / 1e6:.2f} M/s)",
                        f"{v / 1e6:.2f} M/s = {v / bp:.2f}x",
                        v >= factor * bp))
    for scen, how in (("latency", "producer spins"),
                      ("latency-sleep", "producer sleeps")):
        bp, bpn = best_peer(scen, "p50_us", False)
        for impl in OURS:
            v = med(scen, "p50_us", impl)
            if v is not None and bp is not None:
                ok = v <= bp
                if not ok:  # say when the two are inside each other's noise
                    lo = aggregate(results, scen, "p50_us", impl)[1]
                    hi = aggregate(results, scen, "p50_us", bpn)[2]
                    ok = "no (min–max ranges overlap)" if lo <= hi else False
                out.append((f"{impl} latency p50 ({how}) <= best peer "
                            f"({bpn}, {bp:.2f} µs)", f"{v:.2f} µs", ok))
    for impl in OURS:
        v = med("memory", "bytes_per_job", impl)
        if v is not None:
            out.append((f"{impl} memory per queued job <= 24 bytes",
                        f"{v:.1f} bytes", v <= 24))
    for impl in OURS:
        v = med("idle", "cpu_us_per_s", impl)
        if v is not None:
            out.append((f"{impl} idle CPU < 1 ms per s", f"{v:.1f} µs/s",
                        v < 1000))
    for impl in OURS:
        ran = med("shutdown", "ran", impl)
        leaked = med("shutdown", "leaked", impl)
        if ran is not None:
            out.append((f"{impl} shutdown: ran 1, leaked 0",
                        f"ran {ran:.0f}, leaked {leaked:.0f}",
                        ran == 1 and leaked == 0))
    return out


# ---------------------------------------------------------------- SVG chart
COLORS = {"libvirt": "#8c564b", "glib": "#7f7f7f",
          "glib-exclusive": "#bcbd22", "glib-full": "#17becf",
          "nde-pool": "#1f77b4", "nde-events": "#ff7f0e",
          "nde-pool-keyed": "#aec7e8", "ring": "#d62728",
          "inline": "#2ca02c",
          "bare-drain": "#d62728", "libudev-drain": "#9467bd",
          "monitor-drain": "#1f77b4", "monitor-raw-drain": "#aec7e8",
          "bare-latency": "#d62728", "monitor-latency": "#1f77b4",
          "single/1": "#7f7f7f", "static-hash/2": "#c5b0d5",
          "static-hash/4": "#9467bd", "nde-keyed/1": "#aec7e8",
          "nde-keyed/2": "#1f77b4", "nde-keyed/4": "#17344f"}


def esc(s):
    return (str(s).replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def nice_max(v):
    if v <= 0:
        return 1.0
    import math
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def svg_panel(x0, y0, w, h, title, groups, impls, data, dec):
    """groups: [(label, scen, metric, scale)]; data(scen, metric, impl,
    scale) -> (med, lo, hi) or None."""
    out = [f'<text x="{x0}" y="{y0 + 14}" font-size="14" '
           f'font-weight="bold">{esc(title)}</text>']
    top, bottom, left = y0 + 30, y0 + h - 28, x0 + 50
    right = x0 + w - 10
    vals = [data(s, m, i, sc) for (_, s, m, sc) in groups for i in impls]
    vmax = nice_max(max([v[2] for v in vals if v] or [1]))
    ph = bottom - top
    for k in range(6):  # grid + y labels
        v = vmax * k / 5
        y = bottom - ph * k / 5
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" '
                   f'y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 5}" y="{y + 4:.1f}" font-size="10" '
                   f'text-anchor="end">{v:g}</text>')
    gw = (right - left) / len(groups)
    bw = min(40, (gw - 20) / max(1, len(impls)))
    for g, (label, scen, metric, sc) in enumerate(groups):
        gx = left + g * gw + (gw - bw * len(impls)) / 2
        out.append(f'<text x="{left + g * gw + gw / 2:.1f}" y="{bottom + 16}"'
                   f' font-size="12" text-anchor="middle">{esc(label)}</text>')
        for k, impl in enumerate(impls):
            a = data(scen, metric, impl, sc)
            x = gx + k * bw
            if not a:
                out.append(f'<text x="{x + bw / 2:.1f}" y="{bottom - 3}" '
                           f'font-size="9" text-anchor="middle">n/a</text>')
                continue
            med, lo, hi = a
            y = bottom - ph * med / vmax
            out.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" '
                       f'width="{bw - 2:.1f}" height="{bottom - y:.1f}" '
                       f'fill="{COLORS.get(impl, "#999")}">'
                       f'<title>{esc(impl)}: {med:.{dec}f} '
                       f'({lo:.{dec}f}–{hi:.{dec}f})</title></rect>')
            ylo, yhi = bottom - ph * lo / vmax, bottom - ph * hi / vmax
            cx = x + bw / 2
            out.append(f'<path d="M{cx:.1f} {ylo:.1f}V{yhi:.1f}M{cx - 4:.1f} '
                       f'{yhi:.1f}h8M{cx - 4:.1f} {ylo:.1f}h8" '
                       f'stroke="#000" stroke-width="1"/>')
            out.append(f'<text x="{cx:.1f}" y="{yhi - 4:.1f}" font-size="9" '
                       f'text-anchor="middle">{med:.{dec}f}</text>')
    out.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" '
               f'stroke="#000"/>')
    return out


def write_svg(path, results, impls, subtitle, p):
    def data(scen, metric, impl, sc):
        if metric.startswith("ring:"):  # ours / the ring's median
            ring = aggregate(results, scen, metric[5:], "ring")
            a = aggregate(results, scen, metric[5:], impl)
            if not ring or not a or not ring[0]:
                return None
            return tuple(v / ring[0] for v in a)
        return aggregate(results, scen, metric, impl, sc)

    chart_impls = [i for i in impls if i != "inline"]
    vs_ring = [i for i in chart_impls if i != "ring"]
    drains = [i for i in ceilings.UEVENT_DRAINS
              if ("uevent-drain", i) in results]
    lats = [i for i in ceilings.UEVENT_LATENCIES
            if ("uevent-latency", i) in results]
    keyed = [f"{d}/{w}" for d, w in ceilings.KEYED_DESIGNS]
    keyed = [k for k in keyed if any((f"keyed-{h}-{d}", k) in results
                                     for h in ceilings.KEYED_HANDLERS
                                     for d in ceilings.KEYED_DISTS)]
    # (title, groups, decimals, implementations or None = chart_impls)
    panels = [
        ("Throughput, M jobs/s (higher is better)",
         [("burst, 1 producer", "burst1", "jobs_per_s", 1e-6),
          ("burst, 4 producers", "burst4", "jobs_per_s", 1e-6)], 1, None),
        ("Throughput as a fraction of the ring ceiling, same run "
         "(1 = at the ceiling)",
         [("burst, 1 producer", "burst1", "ring:jobs_per_s", 1),
          ("burst, 4 producers", "burst4", "ring:jobs_per_s", 1)], 2,
         vs_ring),
        ("CPU per job, ns (lower is better)",
         [("burst, 1 producer", "burst1", "cpu_ns_per_job", 1),
          ("burst, 4 producers", "burst4", "cpu_ns_per_job", 1)], 0, None),
        ("Ping-pong latency, producer spins: send to job run, µs "
         "(lower is better)",
         [("p50", "latency", "p50_us", 1), ("p99", "latency", "p99_us", 1)],
         2, None),
        ("Ping-pong latency, producer sleeps between round trips, µs "
         "(lower is better)",
         [("p50", "latency-sleep", "p50_us", 1),
          ("p99", "latency-sleep", "p99_us", 1)], 1, None),
        ("Memory per queued job, bytes (lower is better)",
         [(f"{p['memory']:,} queued".replace(",", " "), "memory",
           "bytes_per_job", 1)], 1, None),
    ]
    if drains:
        panels += [
            ("Monitor: drain of a pre-filled socket, k messages/s "
             "(bare recvmmsg = the ceiling)",
             [("rate", "uevent-drain", "msgs_per_s", 1e-3)], 0, drains),
            ("Monitor: CPU per message, µs (lower is better)",
             [("CPU", "uevent-drain", "cpu_us_per_msg", 1)], 2, drains)]
    if lats:
        panels.append(
            ("Monitor: one message on an idle socket -> received / "
             "callback, µs",
             [("p50", "uevent-latency", "p50_us", 1),
              ("p99", "uevent-latency", "p99_us", 1)], 1, lats))
    if keyed:
        panels.append(
            (f"Keyed dispatch: events/s, {p['keyed_n']} events over "
             f"{p['keyed_keys']} keys, handler {p['keyed_cost_us']} µs "
             "(higher is better)",
             [(f"{h}, {d}", f"keyed-{h}-{d}", "events_per_s", 1)
              for h in ceilings.KEYED_HANDLERS
              for d in ceilings.KEYED_DISTS], 0, keyed))
    W, PH = 960, 250
    H = 70 + PH * len(panels)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" '
           f'height="{H}" viewBox="0 0 {W} {H}" '
           f'font-family="sans-serif">',
           f'<rect width="{W}" height="{H}" fill="#fff"/>',
           '<text x="10" y="20" font-size="14" font-weight="bold">'
           'nodedev-events vs its ceilings, libvirt virThreadPool and GLib '
           'GThreadPool (bars: median; whiskers: min–max)</text>',
           f'<text x="10" y="38" font-size="11">{esc(subtitle)}</text>']
    lx = 10
    for impl in chart_impls:  # legend of the pool panels
        out.append(f'<rect x="{lx}" y="48" width="12" height="12" '
                   f'fill="{COLORS.get(impl, "#999")}"/>')
        out.append(f'<text x="{lx + 16}" y="58" font-size="12">'
                   f'{esc(impl)}</text>')
        lx += 30 + 7.5 * len(impl)
    for k, (title, groups, dec, pimpls) in enumerate(panels):
        y0 = 70 + k * PH
        out += svg_panel(10, y0, W - 20, PH - 10, title, groups,
                         pimpls or chart_impls, data, dec)
        if pimpls:  # the panel's own legend, under its title
            lx = 60
            for impl in pimpls:
                out.append(f'<rect x="{lx}" y="{y0 + 19}" width="10" '
                           f'height="10" fill="{COLORS.get(impl, "#999")}"/>')
                out.append(f'<text x="{lx + 13}" y="{y0 + 28}" '
                           f'font-size="10">{esc(impl)}</text>')
                lx += 24 + 6 * len(impl)
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# ------------------------------------------------------------ monitor hook
def run_monitor_hook(smoke, out_dir):
    """The monitor layer's figures come from its own benchmark: an
    executable at $NDE_MONITOR_BENCH or bench/monitor/run.  It gets
    BENCH_SMOKE=0/1 and BENCH_OUT_DIR, prints a Markdown fragment on stdout
    and exits 0.  Returns (markdown, failed)."""
    here = os.path.dirname(os.path.abspath(__file__))
    hook = os.environ.get("NDE_MONITOR_BENCH",
                          os.path.join(here, "monitor", "run"))
    if not (os.path.isfile(hook) and os.access(hook, os.X_OK)):
        return ("Not measured in this run: no monitor benchmark at "
                f"`{os.path.relpath(hook)}` (set `NDE_MONITOR_BENCH` or add "
                "an executable `bench/monitor/run` that prints a Markdown "
                "fragment: storm rate, message-to-callback latency, bytes per "
                "device, enumeration scaling, beside libvirt 9.0's node-device "
                "driver where it can run).", False)
    env = dict(os.environ, BENCH_SMOKE="1" if smoke else "0",
               BENCH_OUT_DIR=os.path.abspath(out_dir))
    print(f"bench: running the monitor benchmark {hook}", file=sys.stderr)
    try:
        r = subprocess.run([hook], capture_output=True, text=True, env=env,
                           timeout=120 if smoke else 3600)
    except subprocess.TimeoutExpired:
        return f"The monitor benchmark `{hook}` timed out.", True
    if r.returncode != 0:
        return (f"The monitor benchmark `{hook}` failed (exit "
                f"{r.returncode}):\n\n```\n{r.stderr.strip()[-2000:]}\n```",
                True)
    return r.stdout.strip(), False


# ------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--harness", default="target/bench/harness")
    ap.add_argument("--lib", default="target/release/libnodedev_events.so")
    ap.add_argument("--out-dir", default="bench/results")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny N, one repetition (CI)")
    ap.add_argument("--reps", type=int, help="repetitions (default 7)")
    ap.add_argument("--impls", help="comma-separated subset of " +
                    ",".join(IMPLS))
    ap.add_argument("--scenarios", help="comma-separated subset of burst1,"
                    "burst4,latency,latency-sleep,memory,shutdown,idle")
    ap.add_argument("--require-nde", action="store_true",
                    help="fail when our library cannot be loaded")
    ap.add_argument("--nice", type=int,
                    help="run the harness at this nice value (e.g. -10, as "
                    "root) when other work shares the machine")
    ap.add_argument("--no-monitor", action="store_true",
                    help="skip the monitor benchmark hook (bench/monitor/run)")
    ap.add_argument("--uevent-bench", default="target/bench/uevent-bench",
                    help="bench/monitor/uevent_bench.c, built")
    ap.add_argument("--keyed-bench", default="target/bench/keyed-bench",
                    help="bench/keyed.c, built")
    ap.add_argument("--no-uevent", action="store_true",
                    help="skip the monitor's drain and latency ceilings")
    ap.add_argument("--no-keyed", action="store_true",
                    help="skip the keyed-dispatch benchmark (issue 15)")
    a = ap.parse_args()

    p = dict(SMOKE if a.smoke else FULL)
    if a.reps:
        p["reps"] = a.reps
    scen = scenarios(p)
    impls = a.impls.split(",") if a.impls else IMPLS
    names = a.scenarios.split(",") if a.scenarios else list(scen)
    for i in impls:
        if i not in IMPLS:
            ap.error(f"unknown implementation {i}")
    for s in names:
        if s not in scen:
            ap.error(f"unknown scenario {s}")
    harness = os.path.abspath(a.harness)
    lib = os.path.abspath(a.lib)
    if not os.access(harness, os.X_OK):
        sys.exit(f"bench: no harness at {harness} (make bench builds it)")
    os.makedirs(a.out_dir, exist_ok=True)

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    info = machine_info(harness, lib)
    results, failures, skipped = {}, [], {}
    for rep in range(p["reps"]):
        for s in names:
            for impl in impls:
                if impl in skipped or s not in SUPPORTS.get(impl, ALL_SCEN):
                    continue
                print(f"bench: rep {rep + 1}/{p['reps']} {s:9s} {impl}",
                      file=sys.stderr, flush=True)
                status, res = run_one(harness, lib, impl, scen[s],
                                      p["timeout"], a.nice)
                if status == "ok":
                    results.setdefault((s, impl), []).append(res)
                elif status == "skip":
                    skipped[impl] = res
                    print(f"bench: {impl} not available: {res}",
                          file=sys.stderr)
                    if a.require_nde and impl in OURS:
                        failures.append(f"{impl} not available: {res}")
                else:
                    failures.append(res)
                    print(f"bench: FAILED {res}", file=sys.stderr)
                    if status == "timeout":  # keep the run's time bounded
                        skipped[impl] = "hung: " + res

    load_pool = os.getloadavg()
    # the monitor against the bare receiver and libudev (same run)
    uevent_skip = "skipped (`--no-uevent`)" if a.no_uevent else None
    ub = os.path.abspath(a.uevent_bench)
    if not uevent_skip and not os.access(ub, os.X_OK):
        uevent_skip = f"no {a.uevent_bench} (make bench builds it)"
    for rep in range(p["uevent_reps"]):
        for mode, args in ceilings.uevent_args(p):
            if uevent_skip:
                break
            print(f"bench: rep {rep + 1}/{p['uevent_reps']} uevent "
                  f"{mode}", file=sys.stderr, flush=True)
            status, res = run_cmd([ub, "--lib", lib] + args,
                                  p["timeout"], a.nice)
            if status == "ok":
                results.setdefault((res["scenario"], mode), []).append(res)
            elif status == "skip":
                uevent_skip = res.splitlines()[-1] if res else "skipped"
                print(f"bench: uevent-bench not available: {res}",
                      file=sys.stderr)
            else:
                failures.append(res)
                print(f"bench: FAILED {res}", file=sys.stderr)

    load_uevent = os.getloadavg()
    # keyed dispatch (issue 15) beside a single worker and static hashing
    keyed_skip = "skipped (`--no-keyed`)" if a.no_keyed else None
    kb = os.path.abspath(a.keyed_bench)
    if not keyed_skip and not os.access(kb, os.X_OK):
        keyed_skip = f"no {a.keyed_bench} (make bench builds it)"
    nde_keyed_missing = None
    for rep in range(0 if keyed_skip else p["keyed_reps"]):
        for scen_k, label, design, args in ceilings.keyed_args(p):
            if design == "nde-keyed" and nde_keyed_missing:
                continue
            print(f"bench: rep {rep + 1}/{p['keyed_reps']} {scen_k} "
                  f"{label}", file=sys.stderr, flush=True)
            status, res = run_cmd([kb, "--lib", lib] + args,
                                  max(p["timeout"], 600), a.nice)
            if status == "ok":
                results.setdefault((scen_k, label), []).append(res)
            elif status == "skip":
                nde_keyed_missing = res.splitlines()[-1] if res else "?"
                print(f"bench: {label} not available: {res}",
                      file=sys.stderr)
            else:
                failures.append(res)
                print(f"bench: FAILED {res}", file=sys.stderr)

    # the monitor with several workers (issue 15): the same drain, each
    # lifecycle callback sleeping or burning monw_cost_us
    monw_rows = []
    for kind in ("sleep", "cost"):
        for w in (1, 2, 4):
            if uevent_skip:
                break
            print(f"bench: monitor {w} worker(s), callback {kind}",
                  file=sys.stderr, flush=True)
            status, res = run_cmd(
                [ub, "--lib", lib, "--mode", "monitor-drain", "--n",
                 str(p["monw_n"]), "--workers", str(w),
                 f"--{kind}-us", str(p["monw_cost_us"])],
                p["timeout"], a.nice)
            if status == "ok":
                results.setdefault((f"monitor-workers-{kind}", str(w)),
                                   []).append(res)
                monw_rows.append((kind, w, res))
            elif status != "skip":
                failures.append(res)
                print(f"bench: FAILED {res}", file=sys.stderr)

    load_end = os.getloadavg()
    info["load average (1 min)"] = \
        f"{load_start[0]:.2f} at the start, {load_pool[0]:.2f} after the " \
        f"pool and events scenarios, {load_uevent[0]:.2f} after the " \
        f"monitor's, {load_end[0]:.2f} at the end, on " \
        f"{os.cpu_count()} CPUs (other work on the machine during the " \
        "run skews every figure)"
    if a.nice is not None:
        info["harness priority"] = f"nice {a.nice}"
    monitor_md, monitor_failed = ("Skipped (`--no-monitor`).", False) \
        if a.no_monitor else run_monitor_hook(a.smoke, a.out_dir)
    if monitor_failed:
        failures.append("monitor benchmark failed")

    # --------------------------------------------------------- the report
    shown = [i for i in impls if i not in skipped]
    stamp = started.strftime("%Y%m%d-%H%M%S")
    mode = "smoke (tiny N, not for comparison)" if a.smoke else "full"
    cmd = "make bench-smoke" if a.smoke else "make bench"
    md = [f"# Benchmark: nodedev-events vs libvirt and GLib ({mode})", "",
          f"Run {started.strftime('%Y-%m-%d %H:%M UTC')} with `{cmd}` "
          f"(`{' '.join(['bench/run.py'] + sys.argv[1:])}`), "
          f"{p['reps']} repetition(s) of each scenario, each in a fresh "
          "process, interleaved. Cells: median (min–max).", "",
          "| machine | |", "|---|---|"]
    for k, v in info.items():
        md.append(f"| {k} | {v} |")
    md += ["", "Implementations, all with one worker:", ""]
    for i in shown:
        md.append(f"- `{i}`: {IMPL_NOTE[i]}")
    for i, why in skipped.items():
        md.append(f"- `{i}`: not available in this run ({why.splitlines()[0] if why else '?'})")
    md += ["", "| scenario | " + " | ".join(shown) + " |",
           "|---|" + "---:|" * len(shown)]
    for label, s, metric, scale, dec, _ in rows(p):
        if s not in names:
            continue
        cells = [cell(aggregate(results, s, metric, i, scale), dec,
                      p["reps"]) for i in shown]
        md.append(f"| {label} | " + " | ".join(cells) + " |")
    md += ["", "How each figure is taken (bench/harness.c): job data is a "
           "16-byte `malloc`'d object allocated before the timed part and "
           "freed exactly once by whoever runs or discards it (a trampoline "
           "for the peers, `free_fn` for ours; checked per job). (1)(2) time "
           "from the first send until the last job's data is freed; (7) is "
           "the process CPU time over the same span divided by N (both "
           "threads, so it can exceed wall time per job). (3) one job in "
           "flight, from the send until the job has run: the job stores a "
           "flag the producer spins on (the library's own hand-off and "
           "wake-up), or posts a semaphore the producer sleeps on (both "
           "threads asleep between round trips, so the VM's idle wake-ups "
           "dominate). (4) RSS "
           "delta while the worker is blocked in a job and N more are "
           "queued. (5) the worker is blocked in a job, N more are queued, "
           "the library's shutdown/free call starts and the running job is "
           f"released {p['delay_ms']} ms later; ran counts the running job; "
           "leaked = jobs whose data was never freed. (6) per-thread CPU "
           "clocks of every thread but the main one, over "
           f"{p['idle_ms']} ms starting when the last warm-up job was freed, "
           "scaled to 1 s.", ""]
    ratios = {}
    pool_lines, r1 = ceilings.pool_ratio_table(results, shown)
    ratios.update(r1)
    md += ["## Ceilings and ratios", "",
           "Every figure of ours beside its ceiling from this same run. "
           "Throughput: ours / ceiling (1.00 = at the ceiling). Costs (CPU, "
           "latency): ours / ceiling as a multiple (2.00x = twice the "
           "ceiling's cost). Medians.", "",
           "### Pool and events layer (ceiling: `ring`)", ""] + pool_lines
    ev_pool = []
    for sc, what in (("burst1", "S1"), ("burst4", "S2")):
        e = ceilings.med(results, sc, "jobs_per_s", "nde-events")
        pl = ceilings.med(results, sc, "jobs_per_s", "nde-pool")
        if e and pl:
            ev_pool.append(f"{what} {e / pl:.2f}")
            ratios[f"nde-events {sc} / nde-pool"] = e / pl
    if ev_pool:
        md += ["", "The events layer over the pool it is built on: " +
               ", ".join(ev_pool) + "."]
    md += ["", "### Monitor fast path (ceilings: the bare netlink receiver, "
           "libudev's own loop)", ""]
    if uevent_skip:
        md.append(f"Not measured in this run: {uevent_skip}.")
    else:
        mon_lines, r2 = ceilings.monitor_ratio_table(results)
        ratios.update(r2)
        md += mon_lines + [""] + [f"- `{k}`: {v}" for k, v in
                                  ceilings.UEVENT_NOTE.items()]
        md += ["",
               f"Drains: {p['uevents']} udev-group `add` messages "
               "(libudev's wire format, net devices that sysfs does not "
               "have) queued while the receiver process is stopped "
               "(SIGSTOP), then it is continued; rate from the continue "
               "until the last message is counted (callback ran, for ours); "
               "CPU = the receiver process's CPU time over the number of "
               "messages; RSS growth per device over the drain. Latency: "
               f"{p['probes']} probes, one message at a time, 1 ms apart "
               "(every thread asleep when it is sent). All in a private "
               "network and mount namespace (`bench/monitor/"
               "uevent_bench.c`), "
               f"{p['uevent_reps']} repetition(s), medians."]
    md.append("")
    if not a.smoke:
        md += ["## Targets (issue 14)", "",
               "| target | measured | met |", "|---|---|---|"]
        md += [f"| {t} | {m} | {ok} |" for t, m, ok in
               ceilings.targets14(results)]
        md.append("")
    md += ["## Keyed dispatch: ordered per key, parallel across keys "
           "(issue 15)", ""]
    if keyed_skip:
        md.append(f"Not measured in this run: {keyed_skip}.")
    else:
        md += [f"{p['keyed_n']} events over {p['keyed_keys']} keys from one "
               f"producer; the handler spends {p['keyed_cost_us']} µs of "
               "CPU, or sleeps that long; `skewed`: 10 % of the events on "
               "one key. Events/s from the first send to the last event "
               "handled, with the speed-up over the single worker of the "
               "same workload (`bench/keyed.c`, "
               f"{p['keyed_reps']} repetition(s)); every design is checked "
               "for per-key order and no overlap within a key.", ""]
        md += ceilings.keyed_table(results, p["keyed_cost_us"])
        if nde_keyed_missing:
            md += ["", f"nde keyed: not available ({nde_keyed_missing})."]
        if not a.smoke:
            md += ["", "| target | measured | met |", "|---|---|---|"]
            md += [f"| {t} | {m} | {ok} |" for t, m, ok in
                   ceilings.targets15(results)]
    md.append("")
    md += ["## The monitor with several workers (issue 15)", ""]
    if not monw_rows:
        md.append("Not measured in this run: "
                  f"{uevent_skip or 'uevent-bench failed'}.")
    else:
        one = {k: r["msgs_per_s"] for k, w, r in monw_rows if w == 1}
        md += [f"{p['monw_n']} injected udev-group adds of distinct devices "
               "drained from a pre-filled socket (as above) by a monitor "
               "with `nde_monitor_config.workers` = 1, 2, 4, the lifecycle "
               f"callback sleeping {p['monw_cost_us']} µs (as I/O would) or "
               f"burning {p['monw_cost_us']} µs of CPU; events/s from the "
               "continue to the last callback, and the speed-up over one "
               "worker (`uevent-bench --workers`, 1 repetition).", "",
               "| callback | workers | events/s | speed-up | CPU per event, µs |",
               "|---|---:|---:|---:|---:|"]
        for kind, w, r in monw_rows:
            up = r["msgs_per_s"] / one[kind] if one.get(kind) else 0
            md.append(f"| {kind} {p['monw_cost_us']} µs | {w} | "
                      f"{r['msgs_per_s']:.0f} | {up:.2f}x | "
                      f"{r['cpu_us_per_msg']:.1f} |")
    md.append("")
    tg = targets(results, shown)
    if tg and not a.smoke:
        md += ["## Against the peers (issue 6)", "",
               "| target | measured | met |", "|---|---|---|"]
        for t, m, ok in tg:
            verdict = ok if isinstance(ok, str) else \
                ("yes" if ok else "**no**")
            md.append(f"| {t} | {m} | {verdict} |")
        md.append("")
    md += ["## Monitor layer: scale and enumeration", "", monitor_md, ""]
    if failures:
        md += ["## Failures", ""] + [f"- {f.splitlines()[0]}"
                                     for f in failures] + [""]
    text = "\n".join(md)

    base = os.path.join(a.out_dir, f"bench-{stamp}")
    subtitle = (f"{started.strftime('%Y-%m-%d %H:%M UTC')}; "
                f"{info.get('cpu', '')}; libvirt {info.get('libvirt', '?')}, "
                f"GLib {info.get('glib', '?')}, nodedev-events "
                f"{info.get('nde', '?')} ({info.get('commit', '')}); "
                f"{p['reps']} reps")
    text = text.replace("## Monitor layer",
                        f"![chart](bench-{stamp}.svg)\n\n## Monitor layer", 1)
    with open(base + ".md", "w") as f:
        f.write(text)
    write_svg(base + ".svg", results, shown, subtitle, p)
    with open(base + ".json", "w") as f:  # one raw run per line
        head = {"started": started.isoformat(), "params": p,
                "machine": info, "skipped": skipped, "failures": failures,
                "ratios": ratios}
        f.write('{"meta": ' + json.dumps(head) + ',\n "runs": [\n')
        runs = [json.dumps(r) for k in sorted(results) for r in results[k]]
        f.write(",\n".join(runs) + "\n]}\n")
    shutil.copyfile(base + ".svg", os.path.join(a.out_dir, "latest.svg"))
    # latest.md must point at latest.svg
    with open(os.path.join(a.out_dir, "latest.md"), "w") as f:
        f.write(text.replace(f"bench-{stamp}.svg", "latest.svg"))
    print(text)
    print(f"bench: wrote {base}.md, .svg, .json (and latest.md, .svg)",
          file=sys.stderr)
    if failures:
        print(f"bench: {len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
