"""Ceilings, ratios and the targets of issues 14 and 15 for bench/run.py.

Every figure of ours is divided by its ceiling from the same run:
- pool and events layer: the `ring` reference (bench/ring.c) and the
  `inline` floor (no hand-off), from bench/harness;
- monitor: the bare netlink receiver (only recvmmsg and count) and
  libudev's own receive loop, from bench/monitor/uevent_bench.c;
- keyed dispatch: the single worker and static hashing, from
  bench/keyed.c.
Throughput ratios are ours / ceiling (1.00 = at the ceiling); costs
(CPU, latency, bytes) are ours / ceiling as a multiple ("2.1x" = 2.1 times
the ceiling's cost).  Python 3 standard library only.
"""
import statistics

UEVENT_DRAINS = ["bare-drain", "libudev-drain", "monitor-drain",
                 "monitor-raw-drain"]
UEVENT_LATENCIES = ["bare-latency", "monitor-latency"]
UEVENT_NOTE = {
    "bare-drain": "ceiling: a socket bound to the udev group that only "
                  "`recvmmsg()`s (64 at a time) and counts",
    "libudev-drain": "libudev's own loop: `udev_monitor_receive_device()` "
                     "+ `udev_device_unref()` per message (systemd 252)",
    "monitor-drain": "ours, fast path: lifecycle callback per event, table "
                     "updated",
    "monitor-raw-drain": "ours, raw libudev path: a raw `NDE_EVENT_UDEV_ADD` "
                         "handler is registered, so each uevent is a "
                         "`struct udev_device *` too",
    "bare-latency": "ceiling: the bare receiver's send -> `recvmmsg()` "
                    "returned",
    "monitor-latency": "ours: send -> lifecycle callback ran",
}
KEYED_HANDLERS = ["cpu", "sleep"]
KEYED_DISTS = ["uniform", "skewed"]
KEYED_DESIGNS = [("single", 1), ("static-hash", 2), ("static-hash", 4),
                 ("nde-keyed", 1), ("nde-keyed", 2), ("nde-keyed", 4)]


def uevent_args(p):
    """[(mode, arguments)] for uevent-bench."""
    out = []
    for m in UEVENT_DRAINS:
        out.append((m, ["--mode", m, "--n", str(p["uevents"])]))
    for m in UEVENT_LATENCIES:
        out.append((m, ["--mode", m, "--probes", str(p["probes"])]))
    return out


def keyed_args(p):
    """[(scenario, impl label, design, arguments)] for keyed-bench."""
    out = []
    for h in KEYED_HANDLERS:
        for d in KEYED_DISTS:
            for design, w in KEYED_DESIGNS:
                out.append((f"keyed-{h}-{d}", f"{design}/{w}", design,
                            ["--design", design, "--workers", str(w),
                             "--handler", h, "--dist", d,
                             "--n", str(p["keyed_n"]),
                             "--keys", str(p["keyed_keys"]),
                             "--cost-us", str(p["keyed_cost_us"])]))
    return out


def med(results, scen, metric, impl):
    vals = [r[metric] for r in results.get((scen, impl), []) if metric in r]
    return statistics.median(vals) if vals else None


def _f(v, dec=2):
    return "–" if v is None else f"{v:,.{dec}f}".replace(",", " ")


def _ratio(v, ceil):
    return None if v is None or not ceil else v / ceil


def _r(x, cost=False):
    if x is None:
        return "–"
    return f"{x:.2f}x" if cost else f"{x:.2f}"


# ------------------------------------------------------ pool / events layer
# (label, scenario, metric, scale, decimals, cost?)
POOL_ROWS = [
    ("burst, 1 producer (S1): M jobs/s", "burst1", "jobs_per_s",
     1e-6, 2, False),
    ("burst, 4 producers (S2): M jobs/s", "burst4", "jobs_per_s",
     1e-6, 2, False),
    ("CPU per job, S1: ns", "burst1", "cpu_ns_per_job", 1, 0, True),
    ("CPU per job, S2: ns", "burst4", "cpu_ns_per_job", 1, 0, True),
    ("ping-pong p50, producer spins: µs", "latency", "p50_us", 1, 2, True),
    ("ping-pong p99, producer spins: µs", "latency", "p99_us", 1, 2, True),
    ("ping-pong p50, producer sleeps: µs", "latency-sleep", "p50_us", 1, 1,
     True),
]


def pool_ratio_table(results, shown):
    """Markdown lines: each figure with its ratio to the ring reference."""
    cols = [i for i in ["nde-pool", "nde-events", "nde-pool-keyed",
                        "libvirt", "glib", "glib-exclusive", "glib-full"]
            if i in shown]
    lines = ["| figure | ring (ceiling) | inline (floor) | " +
             " | ".join(cols) + " |",
             "|---|---:|---:|" + "---:|" * len(cols)]
    ratios = {}
    for label, scen, metric, scale, dec, cost in POOL_ROWS:
        ring = med(results, scen, metric, "ring")
        inl = med(results, scen, metric, "inline")
        cells = [_f(ring * scale if ring is not None else None, dec),
                 _f(inl * scale if inl is not None else None, dec)]
        for i in cols:
            v = med(results, scen, metric, i)
            x = _ratio(v, ring)
            ratios[f"{i} {scen} {metric} / ring"] = x
            cells.append("–" if v is None else
                         f"{_f(v * scale, dec)} ({_r(x, cost)})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines, ratios


# -------------------------------------------------------------- monitor
def monitor_ratio_table(results):
    def m(scen, metric, impl):
        return med(results, scen, metric, impl)
    D, L = "uevent-drain", "uevent-latency"
    bare_rate = m(D, "msgs_per_s", "bare-drain")
    bare_cpu = m(D, "cpu_us_per_msg", "bare-drain")
    lu_rate = m(D, "msgs_per_s", "libudev-drain")
    lu_cpu = m(D, "cpu_us_per_msg", "libudev-drain")
    rows = []  # (figure, ceiling label, ceiling, ours label, ours, ratio,
    #            cost?)
    for impl, what in (("monitor-drain", "fast path"),
                       ("monitor-raw-drain", "raw libudev path"),
                       ("libudev-drain", "libudev's own loop")):
        rate = m(D, "msgs_per_s", impl)
        cpu = m(D, "cpu_us_per_msg", impl)
        rows.append((f"drain of the pre-filled socket, {what}: k msgs/s",
                     "bare recvmmsg", bare_rate and bare_rate / 1e3,
                     rate and rate / 1e3, _ratio(rate, bare_rate), False))
        rows.append((f"CPU per message, {what}: µs", "bare recvmmsg",
                     bare_cpu, cpu, _ratio(cpu, bare_cpu), True))
    def split(impl, sys):  # CPU per message in the kernel / user space
        c, sh = m(D, "cpu_us_per_msg", impl), m(D, "sys_share", impl)
        return None if c is None or sh is None else c * (sh if sys
                                                         else 1 - sh)
    for sys, where in ((1, "in the kernel"), (0, "in user space")):
        b = split("bare-drain", sys)
        o = split("monitor-drain", sys)
        rows.append((f"CPU per message {where} (rusage split), fast path: "
                     "µs", "bare recvmmsg", b, o,
                     _ratio(o, b) if sys else None, True))
    for impl, what in (("monitor-drain", "fast path"),
                       ("monitor-raw-drain", "raw libudev path")):
        b = m(D, "ctxsw_per_1000", "bare-drain")
        o = m(D, "ctxsw_per_1000", impl)
        rows.append((f"context switches (≈ wake-ups) per 1 000 messages, "
                     f"{what}", "bare recvmmsg", b, o, _ratio(o, b), True))
    raw_rate = m(D, "msgs_per_s", "monitor-raw-drain")
    raw_cpu = m(D, "cpu_us_per_msg", "monitor-raw-drain")
    rows.append(("raw libudev path vs libudev's own loop: k msgs/s",
                 "libudev loop", lu_rate and lu_rate / 1e3,
                 raw_rate and raw_rate / 1e3, _ratio(raw_rate, lu_rate),
                 False))
    rows.append(("raw libudev path vs libudev's own loop: CPU µs/msg",
                 "libudev loop", lu_cpu, raw_cpu, _ratio(raw_cpu, lu_cpu),
                 True))
    for pct in ("p50", "p99"):
        b = m(L, f"{pct}_us", "bare-latency")
        o = m(L, f"{pct}_us", "monitor-latency")
        rows.append((f"one message on an idle socket -> callback, {pct}: µs",
                     "bare recvmmsg", b, o, _ratio(o, b), True))
    lines = ["| figure | ceiling | ceiling's figure | ours | ratio |",
             "|---|---|---:|---:|---:|"]
    ratios = {}
    for fig, cl, c, o, x, cost in rows:
        ratios[fig] = x
        lines.append(f"| {fig} | {cl} | {_f(c, 2)} | {_f(o, 2)} | "
                     f"{_r(x, cost)} |")
    bpd = m(D, "bytes_per_device", "monitor-drain")
    lines.append(f"| RSS growth per device in the table (fast path): "
                 f"bytes | – | – | {_f(bpd, 1)} | – |")
    return lines, ratios


# -------------------------------------------------------------- keyed
def keyed_table(results, cost_us):
    """Markdown lines: events/s per design, and the speed-up over the
    single worker of the same workload."""
    labels = [f"{d}/{w}" for d, w in KEYED_DESIGNS]
    head = {"single/1": "single worker", "static-hash/2": "static hash, 2",
            "static-hash/4": "static hash, 4", "nde-keyed/1": "nde keyed, 1",
            "nde-keyed/2": "nde keyed, 2", "nde-keyed/4": "nde keyed, 4"}
    lines = ["| handler, keys | " + " | ".join(head[x] for x in labels) +
             " |", "|---|" + "---:|" * len(labels)]
    for h in KEYED_HANDLERS:
        for d in KEYED_DISTS:
            scen = f"keyed-{h}-{d}"
            single = med(results, scen, "events_per_s", "single/1")
            cells = []
            for lab in labels:
                v = med(results, scen, "events_per_s", lab)
                if v is None:
                    cells.append("not available" if lab.startswith("nde")
                                 else "–")
                elif lab == "single/1":
                    cells.append(f"{v:,.0f}".replace(",", " "))
                else:
                    cells.append(f"{v:,.0f} ({_r(_ratio(v, single), True)})"
                                 .replace(",", " "))
            what = (f"{cost_us} µs of CPU" if h == "cpu"
                    else f"sleeps {cost_us} µs")
            lines.append(f"| {what}, {d} | " + " | ".join(cells) + " |")
    return lines


# -------------------------------------------------------------- targets
def targets14(results):
    """(target, measured, met) for issue 14's targets 2-5."""
    out = []

    def m(scen, metric, impl):
        return med(results, scen, metric, impl)

    def add(t, v, ref, want, cost=False, unit=""):
        if v is None or ref is None:
            out.append((t, "not measured", "**no**"))
            return
        x = v / ref
        ok = x <= want if cost else x >= want
        out.append((t, f"{_r(x, cost)}{unit}", "yes" if ok else "**no**"))

    ring1, ring4 = m("burst1", "jobs_per_s", "ring"), \
        m("burst4", "jobs_per_s", "ring")
    p1, p4 = m("burst1", "jobs_per_s", "nde-pool"), \
        m("burst4", "jobs_per_s", "nde-pool")
    e1, e4 = m("burst1", "jobs_per_s", "nde-events"), \
        m("burst4", "jobs_per_s", "nde-events")
    add("2. pool S1 >= 0.90 of the ring", p1, ring1, 0.90)
    add("2. pool S2 >= 1.00 of the ring", p4, ring4, 1.00)
    for impl, what in (("nde-pool", "2. pool"), ("nde-events", "3. events")):
        b = m("memory", "bytes_per_job", impl)
        unit = "job" if impl == "nde-pool" else "event"
        out.append((f"{what}: <= 17 B per queued {unit}", _f(b, 1) + " B",
                    "–" if b is None else ("yes" if b <= 17.05 else "**no**")))
    idle = m("idle", "cpu_us_per_s", "nde-pool")
    out.append(("2. pool: 0 idle CPU (µs per s over 1 s idle)", _f(idle, 1),
                "–" if idle is None else ("yes" if idle < 1 else "**no**")))
    add("3. events S1 >= 0.90 of the pool", e1, p1, 0.90)
    add("3. events S2 >= 0.90 of the pool", e4, p4, 0.90)
    add("3. events ping-pong p50 (spins) <= the pool's",
        m("latency", "p50_us", "nde-events"),
        m("latency", "p50_us", "nde-pool"), 1.0, cost=True)
    D, L = "uevent-drain", "uevent-latency"
    add("4. monitor drain >= 0.6 of the bare receiver's rate",
        m(D, "msgs_per_s", "monitor-drain"), m(D, "msgs_per_s", "bare-drain"),
        0.6)
    add("4. monitor CPU per message <= 2x the bare receiver's",
        m(D, "cpu_us_per_msg", "monitor-drain"),
        m(D, "cpu_us_per_msg", "bare-drain"), 2.0, cost=True)
    b = m(D, "bytes_per_device", "monitor-drain")
    out.append(("4. monitor <= 230 B per device", _f(b, 1) + " B",
                "–" if b is None else ("yes" if b <= 230 else "**no**")))
    add("4. monitor latency p50 <= 1.5x the bare receiver's",
        m(L, "p50_us", "monitor-latency"), m(L, "p50_us", "bare-latency"),
        1.5, cost=True)
    add("4. monitor latency p99 <= 3x the bare receiver's",
        m(L, "p99_us", "monitor-latency"), m(L, "p99_us", "bare-latency"),
        3.0, cost=True)
    add("5. raw libudev path >= 0.5 of libudev's own receive rate",
        m(D, "msgs_per_s", "monitor-raw-drain"),
        m(D, "msgs_per_s", "libudev-drain"), 0.5)
    return out


def targets15(results):
    """(target, measured, met) for issue 15's benchmark targets."""
    out = []

    def m(scen, impl, metric="events_per_s"):
        return med(results, scen, metric, impl)

    def speedup(scen, impl):
        v, s = m(scen, impl), m(scen, "single/1")
        return None if v is None or not s else v / s

    for t, scen, impl, want in (
            ("keyed, 2 workers, CPU-bound handler: >= 1.8x the single "
             "worker", "keyed-cpu-uniform", "nde-keyed/2", 1.8),
            ("keyed, 4 workers, sleeping handler: >= 3.5x the single "
             "worker", "keyed-sleep-uniform", "nde-keyed/4", 3.5)):
        x = speedup(scen, impl)
        out.append((t, "not available" if x is None else f"{x:.2f}x",
                    "–" if x is None else ("yes" if x >= want else "**no**")))
    for h in KEYED_HANDLERS:
        for w in (2, 4):
            scen = f"keyed-{h}-skewed"
            k, sh = m(scen, f"nde-keyed/{w}"), m(scen, f"static-hash/{w}")
            out.append((f"keyed ahead of static hashing, skewed, {h} "
                        f"handler, {w} workers",
                        "not available" if k is None or not sh
                        else f"{k / sh:.2f}x",
                        "–" if k is None or not sh
                        else ("yes" if k > sh else "**no**")))
    k = med(results, "burst1", "cpu_ns_per_job", "nde-pool-keyed")
    u = med(results, "burst1", "cpu_ns_per_job", "nde-pool")
    out.append(("keyed dispatch <= 100 ns per job over unkeyed (CPU per job, "
                "S1)", "not available" if k is None or u is None
                else f"{k - u:+.0f} ns", "–" if k is None or u is None
                else ("yes" if k - u <= 100 else "**no**")))
    return out
