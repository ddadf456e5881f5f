"""Turns the benchmark's results into the project's targets, a markdown report and plots."""

import os
import statistics

# The project's stated targets (reported, never enforced).
RECVLOGICAL_RATIO = 1.05
NAIVE_RATIO = 0.33
TLS_RATIO = 1.10  # TLS to Redis may cost at most 10% wall time on the backlog
RSS_MB = 32.0
P99_PACED_MS = 1.0
P99_FLAT_MS = 5.0
# The event loop rework's goals, against the floors measured in the same run.
IDEAL_P99_RATIO = 1.5  # walbust p99 / ideal consumer p99 at 10,000 txn/s
WALSENDER_P99_RATIO = 2.0  # walbust p99 / walsender-alone p99 at 5,000 txn/s
FLAT_RATE_RATIO = 0.9  # the writer's flat-out rate with walbust / with the ideal consumer
LATENCY_CONTENDERS = ("walsender", "ideal", "naive", "walbust")
BASELINE = "walbust_before"  # bench.py --baseline: an earlier walbust, measured in the same run
BACKLOG_CONTENDERS = ("pg_recvlogical", "naive", "walbust", "walbust_tls", BASELINE)


def _f(v, fmt="{:.2f}"):
    return "n/a" if v is None else fmt.format(v)


def _x(v):
    return "n/a" if v is None else f"{v:.2f}×"


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.0f}%"


def _n(v):
    return "n/a" if v is None else f"{v:,.0f}"


REPLICA_RATIO = 1.1


def replica_ratio(res):
    """Median wall time with one caught-up replica over the median without, or None."""
    runs = res.get("replicas", {}).get("runs", [])
    walls = {label: [r["wall_s"] for r in runs if r["replicas"] == label and r["exit_code"] == 0]
             for label in ("none", "one caught-up replica")}
    if not walls["none"] or not walls["one caught-up replica"]:
        return None
    return statistics.median(walls["one caught-up replica"]) / statistics.median(walls["none"])


def replicas_markdown(res, L):
    rep = res.get("replicas")
    if not rep:
        return
    L.append("")
    L.append("## Read replicas: the backlog with one caught-up replica configured vs none")
    L.append("")
    L.append("Same backlog and slot copy as above; `replicas: {poll_interval: 10ms, grace: 100ms}` against a hot "
             "standby of the benchmark server, runs alternating. The standby is ahead of the backlog, so after its "
             "first poll (the keys of the transactions read before it are held and deleted again) nothing is "
             "held: the cost is the bookkeeping per transaction and the first poll.")
    L.append("")
    L.append("| replicas | run | wall s | changes/s | CPU s | peak RSS MB | Redis commands | keys left |")
    L.append("|---|---|---|---|---|---|---|---|")
    for r in rep["runs"]:
        L.append(f"| {r['replicas']} | {r['run']} | {r['wall_s']:.2f} | {r['changes_per_s']:,.0f} | "
                 f"{r['cpu_s']:.2f} | {r['max_rss_mb']:.1f} | {r['redis_commands']:,} | {r['redis_keys_left']} |")
    ratio = replica_ratio(res)
    if ratio is not None:
        L.append("")
        L.append(f"Median wall time ratio (replica / none): **{ratio:.2f}×** (goal ≤ {REPLICA_RATIO}×).")


def targets(res):
    out = []

    def add(name, target, measured, met, unit=""):
        out.append({"target": name, "goal": target, "measured": measured, "met": met, "unit": unit})

    s = res.get("backlog", {}).get("summary", {})
    if "walbust/pg_recvlogical" in s:
        v = s["walbust/pg_recvlogical"]
        add("backlog wall time vs pg_recvlogical", f"≤ {RECVLOGICAL_RATIO}×", f"{v:.2f}×", v <= RECVLOGICAL_RATIO)
    if "walbust/naive" in s:
        v = s["walbust/naive"]
        add("backlog wall time vs naive consumer", f"≤ {NAIVE_RATIO}×", f"{v:.2f}×", v <= NAIVE_RATIO)
    if "walbust_tls/walbust" in s:
        v = s["walbust_tls/walbust"]
        add("backlog wall time over TLS (rediss://) vs plain", f"≤ {TLS_RATIO}×", f"{v:.2f}×", v <= TLS_RATIO)
    if "walbust" in s:
        v = s["walbust"]["max_rss_mb"]
        add("peak RSS on the backlog", f"≤ {RSS_MB:.0f} MB", f"{v:.1f} MB", v <= RSS_MB)
    ratio = replica_ratio(res)
    if ratio is not None:
        add("backlog wall time, one caught-up replica vs none", f"≤ {REPLICA_RATIO}×", f"{ratio:.2f}×",
            ratio <= REPLICA_RATIO)
    for r in res.get("large", {}).get("runs", []):
        if r["contender"] == "walbust":
            v = r["max_rss_mb"]
            add(f"peak RSS on one {res['large']['rows']:,}-row transaction", f"≤ {RSS_MB:.0f} MB", f"{v:.1f} MB",
                v <= RSS_MB)
    phases = res.get("latency", {}).get("contenders", {}).get("walbust", {}).get("phases", {})
    if "1500" in phases and phases["1500"]["p99_ms"] is not None:
        v = phases["1500"]["p99_ms"]
        add("commit→delete p99 at 1500 txn/s", f"≤ {P99_PACED_MS:g} ms", f"{v:.2f} ms", v <= P99_PACED_MS)
    floor = res.get("latency", {}).get("contenders", {}).get("walsender", {}).get("phases", {})
    if "flat out" in phases and phases["flat out"]["p99_ms"] is not None:
        v = phases["flat out"]["p99_ms"]
        measured = f"{v:.2f} ms"
        f = floor.get("flat out", {}).get("p99_ms")
        if f is not None:
            measured += f" (the walsender alone: {f:.2f} ms)"
        add("commit→delete p99 flat out", f"≤ {P99_FLAT_MS:g} ms", measured, v <= P99_FLAT_MS)
        wm = phases["flat out"].get("walbust_metric") or {}
        if wm.get("p99_ms") is not None and wm.get("receive_p99_ms") is not None:
            # Context, not a target: how much of the flat-out p99 passed inside walbust.
            add("flat out, walbust's own share (its metrics: commit→delete p99 − commit→receive p99)", "–",
                f"{wm['p99_ms'] - wm['receive_p99_ms']:.2f} ms (of {wm['p99_ms']:.2f} ms)", None)
    rework_targets(res.get("latency", {}).get("ratios") or {}, add)
    return out


def rework_targets(ratios, add):
    for key, name, goal, at_most in (
            ("walbust_p99/ideal_p99@10000", "commit→delete p99 at 10000 txn/s vs the ideal consumer",
             IDEAL_P99_RATIO, True),
            ("walbust_p99/walsender_p99@5000", "commit→delete p99 at 5000 txn/s vs the walsender alone",
             WALSENDER_P99_RATIO, True),
            ("walbust_rate/ideal_rate@flat", "writer's flat-out rate with walbust vs with the ideal consumer",
             FLAT_RATE_RATIO, False)):
        v = ratios.get(key)
        if v is not None:
            add(name, f"{'≤' if at_most else '≥'} {goal:g}×", f"{v:.2f}×", v <= goal if at_most else v >= goal)


def latency_cost_markdown(lat, L):
    """Cost per unit of work of each contender per rate, and the rework's ratios."""
    L.append("")
    L.append("Cost of the consumer per phase (all runs summed): walbust and naive are processes (CPU and context "
             "switches of all their threads from /proc, sampled before and after each phase); walsender and "
             "ideal are the probe's consumer thread (getrusage RUSAGE_THREAD). One change per transaction. "
             "Each phase includes the probe's connection setup and the wait for its last delete.")
    L.append("")
    L.append("| rate txn/s | contender | CPU s per 1M changes | voluntary ctx switches per 1k txn | "
             "involuntary per 1k txn |")
    L.append("|---|---|---|---|---|")
    for rate in lat["rates"]:
        for c in LATENCY_CONTENDERS + (BASELINE,):
            ph = lat["contenders"].get(c, {}).get("phases", {}).get(str(rate))
            if ph and ph.get("cost"):
                L.append(f"| {rate} | {c} | {_f(ph['cpu_s_per_1m_changes'])} | {_f(ph['vcsw_per_1k_txn'], '{:.1f}')} "
                         f"| {_f(ph['ivcsw_per_1k_txn'], '{:.1f}')} |")
    r = lat.get("ratios") or {}
    L.append("")
    L.append("Against the floors (pooled p99s; goals of the event loop rework): "
             f"walbust p99 / ideal p99 at 10000 txn/s = **{_x(r.get('walbust_p99/ideal_p99@10000'))}** "
             f"(goal ≤ {IDEAL_P99_RATIO:g}×); walbust p99 / walsender-alone p99 at 5000 txn/s = "
             f"**{_x(r.get('walbust_p99/walsender_p99@5000'))}** (goal ≤ {WALSENDER_P99_RATIO:g}×); the "
             "writer's flat-out rate with walbust / with the ideal consumer = "
             f"**{_x(r.get('walbust_rate/ideal_rate@flat'))}** (goal ≥ {FLAT_RATE_RATIO:g}×). "
             "The same with the median of the runs' own p99s, which one run that fell behind for a "
             f"whole phase does not dominate: walbust / ideal at 10000 = "
             f"{_x(r.get('median_run_p99 walbust/ideal@10000'))}, at 5000 = "
             f"{_x(r.get('median_run_p99 walbust/ideal@5000'))}; walbust / walsender alone at 5000 = "
             f"{_x(r.get('median_run_p99 walbust/walsender@5000'))}.")


def before_after_markdown(res, L):
    """walbust against the --baseline binary of the same run: latency and cost side by side."""
    base = res.get("baseline")
    if not base:
        return
    L.append("")
    L.append(f"## Before / after: walbust `{res['walbust']['commit']}` against `{base['commit']}`")
    L.append("")
    L.append("Both binaries ran in this run, alternating, against the same servers (contender "
             f"`{BASELINE}` is the earlier one).")
    lat = res.get("latency")
    if lat:
        L.append("")
        L.append("| rate txn/s | p99 ms before → after | achieved txn/s before → after | CPU s per 1M changes "
                 "before → after | voluntary ctx switches per 1k txn before → after |")
        L.append("|---|---|---|---|---|")
        for rate in lat["rates"]:
            b = lat["contenders"].get(BASELINE, {}).get("phases", {}).get(str(rate))
            a = lat["contenders"].get("walbust", {}).get("phases", {}).get(str(rate))
            if not a or not b:
                continue
            L.append(f"| {rate} | {_f(b['p99_ms'])} → {_f(a['p99_ms'])} | {_n(b['achieved_rate'])} → "
                     f"{_n(a['achieved_rate'])} | {_f(b.get('cpu_s_per_1m_changes'))} → "
                     f"{_f(a.get('cpu_s_per_1m_changes'))} | {_f(b.get('vcsw_per_1k_txn'), '{:.1f}')} → "
                     f"{_f(a.get('vcsw_per_1k_txn'), '{:.1f}')} |")
    bl = res.get("backlog", {}).get("summary", {})
    if "walbust" in bl and BASELINE in bl:
        b, a = bl[BASELINE], bl["walbust"]
        L.append("")
        L.append(f"Backlog ({res['backlog']['changes']:,} changes, medians): wall {b['wall_s']:.2f} → "
                 f"{a['wall_s']:.2f} s, CPU {b['cpu_s']:.2f} → {a['cpu_s']:.2f} s "
                 f"({_f(b.get('cpu_s_per_1m_changes'))} → {_f(a.get('cpu_s_per_1m_changes'))} s per 1M changes), "
                 f"voluntary ctx switches per 1k txn {_f(b.get('vcsw_per_1k_txn'), '{:.1f}')} → "
                 f"{_f(a.get('vcsw_per_1k_txn'), '{:.1f}')}, peak RSS {b['max_rss_mb']:.1f} → {a['max_rss_mb']:.1f} MB.")


def markdown(res):
    m, w = res["machine"], res["walbust"]
    L = []
    L.append(f"# walbust benchmark ({res['mode']} mode)")
    L.append("")
    L.append(f"Started {res['started']}, took {res['duration_s']:.0f} s. walbust `{w['commit']}` "
             f"({w['version']}, {w['build_type']} build).")
    L.append("")
    L.append(f"Machine: {m['nproc']} CPUs, {m['cpu_model']}, {m['ram_gib']} GiB RAM, Linux {m['kernel']}; "
             f"PostgreSQL {m['postgresql']}, Redis {m['redis']}; Python {m['python']}, psycopg2 {m['psycopg2']}, "
             f"redis-py {m['redis_py']}. Load average (1/5/15 min) at start "
             f"{'/'.join(f'{x:.2f}' for x in m['load_avg_start'])}, at end "
             f"{'/'.join(f'{x:.2f}' for x in m.get('load_avg_end', []))}.")
    L.append("")
    L.append("Every contender runs alone against the same servers; all share the machine with PostgreSQL "
             "(the walsender decodes on one core) and Redis, so a busy machine shows as spread between runs.")

    b = res.get("backlog")
    if b:
        s = b["summary"]
        L.append("")
        L.append(f"## Backlog: {b['changes']:,} row changes in {b['transactions']:,} transactions")
        L.append("")
        L.append(f"Table of {b['table_rows']:,} rows with REPLICA IDENTITY FULL; {b['keys_per_change']} keys per "
                 f"change (rules/blog.yaml); each contender reads its own copy of one slot up to {b['endpos']}. "
                 f"Medians of {s.get('walbust', {}).get('runs', 0)} runs; min–max in brackets.")
        L.append("")
        L.append("| contender | wall s | changes/s | keys/s | CPU s (user+sys) | CPU s per 1M changes | "
                 "voluntary ctx switches per 1k txn | peak RSS MB | walsender CPU s | Redis CPU s | Redis commands |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for c in BACKLOG_CONTENDERS:
            if c not in s:
                continue
            x = s[c]
            L.append(f"| {c} | {x['wall_s']:.2f} ({x['wall_min_s']:.2f}–{x['wall_max_s']:.2f}) | "
                     f"{_n(x['changes_per_s'])} | {_n(x['keys_per_s'])} | {x['cpu_s']:.2f} | "
                     f"{_f(x.get('cpu_s_per_1m_changes'))} | {_f(x.get('vcsw_per_1k_txn'), '{:.1f}')} | "
                     f"{x['max_rss_mb']:.1f} | {x['walsender_cpu_s']:.2f} | {x['redis_cpu_s']:.2f} | "
                     f"{_n(x['redis_commands']) if c != 'pg_recvlogical' else '–'} |")
        L.append("")
        ratios = [f"walbust/{o} = **{s[f'walbust/{o}']:.2f}×**" for o in ("pg_recvlogical", "naive")
                  if f"walbust/{o}" in s]
        if "walbust_tls/walbust" in s:
            ratios.append(f"walbust_tls/walbust = **{s['walbust_tls/walbust']:.2f}×** "
                          f"(CPU {s['walbust_tls/walbust_cpu']:.2f}×)")
        if ratios:
            L.append("Wall-time ratios: " + ", ".join(ratios) + ".")
            L.append("")
        L.append("<details><summary>Every run</summary>")
        L.append("")
        L.append("| run | contender | exit | wall s | changes/s | CPU user s | CPU sys s | voluntary ctx switches | "
                 "peak RSS MB | walsender CPU s | Redis CPU s | Redis commands | load 1m | idle before | acked to end | "
                 "Redis keys left |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in b["runs"]:
            L.append(f"| {r['run']} | {r['contender']} | {r['exit_code']} | {r['wall_s']:.2f} | "
                     f"{_n(r['changes_per_s'])} | {r['cpu_user_s']:.2f} | {r['cpu_sys_s']:.2f} | "
                     f"{_n(r.get('vcsw'))} | {r['max_rss_mb']:.1f} | {_f(r['walsender_cpu_s'])} | {r['redis_cpu_s']:.2f} | "
                     f"{_n(r['redis_commands']) if 'keys' in r else '–'} | {r['load_avg_1m']:.2f} | {_pct(r['idle_before'])} | "
                     f"{'yes' if r['acknowledged_to_endpos'] else '**no**'} | {r.get('redis_keys_left', '–')} |")
        L.append("")
        L.append("</details>")

    lat = res.get("latency")
    if lat:
        L.append("")
        L.append(f"## Commit→delete latency (single-row transactions, {lat['duration_s']:.0f} s per rate)")
        L.append("")
        L.append("Measured outside the consumer by `latency_probe` (C, libpq and hiredis): COMMIT return time "
                 "in its writer thread against the Redis keyspace notification of the key's deletion in its "
                 "watcher thread, both on CLOCK_MONOTONIC. Flat out, one writer commits as fast as it goes.")
        L.append("")
        L.append("**walsender** is the floor of any consumer: no cache consumer runs, the probe streams the slot "
                 "itself (pgoutput, like pg_recvlogical) and times the arrival of each transaction's Commit "
                 "message instead of a delete. What a consumer adds is its latency minus this one.")
        L.append("")
        L.append("**ideal** is the floor of any cache consumer on this machine: a thread of the probe streams the "
                 "slot the same way and, at each Commit, UNLINKs the keys the blog rules render for the "
                 "transaction (4 per single-row UPDATE, one UNLINK per transaction), pipelined: every Commit "
                 "already received goes out in one write to the same Redis; deletes are timed like walbust's.")
        L.append("")
        L.append(f"Samples of {lat['repeat']} runs per consumer pooled; the p99 of each run is listed too.")
        L.append("")
        L.append("| rate txn/s | contender | achieved txn/s | observed | ≤ 0 | p50 ms | p90 ms | p99 ms | max ms | "
                 "p99 per run ms | walbust metric p50 / p99 ms | of which before walbust read the Commit, p50 / p99 ms |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for rate in lat["rates"]:
            label = str(rate)
            for c in LATENCY_CONTENDERS + (BASELINE,):
                ph = lat["contenders"].get(c, {}).get("phases", {}).get(label)
                if not ph:
                    continue
                metric = share = "–"
                if c in ("walbust", BASELINE):
                    wm = ph.get("walbust_metric")
                    metric = f"{_f(wm['p50_ms'])} / {_f(wm['p99_ms'])}" if wm else "not served"
                    if wm and wm.get("receive_p99_ms") is not None:
                        share = f"{_f(wm['receive_p50_ms'])} / {_f(wm['receive_p99_ms'])}"
                per_run = ", ".join(_f(v) for v in ph["p99_ms_per_run"])
                L.append(f"| {label} | {c} | {_n(ph['achieved_rate'])} | {ph['observed']}/{ph['transactions']} | "
                         f"{ph['before_commit_returned']} | {_f(ph['p50_ms'])} | {_f(ph['p90_ms'])} | "
                         f"{_f(ph['p99_ms'])} | {_f(ph['max_ms'])} | {per_run} | {metric} | {share} |")
        latency_cost_markdown(lat, L)
        fl = lat.get("floor")
        if fl:
            L.append("")
            L.append("Measurement floor (no database, no consumer: the probe's writer UNLINKs each key itself "
                     "and its watcher times the notification): " + "; ".join(
                         (f"flat out ({_n(s['achieved_rate'])}/s)" if rate == "flat out" else f"{rate}/s") + f": p50 {_f(s['p50_ms'])} ms, p99 {_f(s['p99_ms'])} ms, max {_f(s['max_ms'])} ms"
                         for rate, s in fl.items()) + ".")
        L.append("")
        L.append("A delete can be seen a little before the writer reads the clock after its COMMIT returned "
                 "(the writer thread waits for a CPU on this busy 2-core machine): such samples count as "
                 "latency ≤ 0 and stay in the distribution. Flat out, the writer, PostgreSQL, Redis, the "
                 "consumer and the probe all compete for the two cores.")
        if isinstance(lat.get("walbust_metrics"), str) and lat["walbust_metrics"] != "served":
            L.append("")
            L.append(f"walbust's own histogram: {lat['walbust_metrics']}.")

    lg = res.get("large")
    if lg:
        L.append("")
        L.append(f"## Large transaction: one UPDATE of {lg['rows']:,} rows")
        L.append("")
        L.append(f"The UPDATE itself took {lg['update_s']:.1f} s. Wall time runs from the consumer's start to its "
                 "exit at the end LSN; the walsender first decodes the whole transaction (proto_version 1 does "
                 "not stream transactions in progress).")
        L.append("")
        L.append("| contender | wall s | changes/s | CPU s | peak RSS MB | walsender CPU s | Redis CPU s | "
                 "Redis keys left |")
        L.append("|---|---|---|---|---|---|---|---|")
        for r in lg["runs"]:
            L.append(f"| {r['contender']} | {r['wall_s']:.2f} | {_n(r['changes_per_s'])} | {r['cpu_s']:.2f} | "
                     f"{r['max_rss_mb']:.1f} | {_f(r['walsender_cpu_s'])} | {r['redis_cpu_s']:.2f} | "
                     f"{r.get('redis_keys_left', '–')} |")

    sc = res.get("scaling")
    if sc:
        L.append("")
        L.append("## Scaling (walbust on the backlog, one run each)")
        L.append("")
        L.append("Only the blog rules' own keys are prefilled; the extra templates' keys do not exist, so their "
                 "UNLINKs find nothing (the cost of a delete that hits is in the first row).")
        # One table per varied setting, the same measurements in each.
        for title, key, rows in (("keys per change", "keys_per_change", sc["keys_per_change"]),
                                 ("batch.max_keys", "max_keys", sc["batch"])):
            L.append("")
            L.append(f"| {title} | wall s | changes/s | keys/s | CPU s | peak RSS MB | Redis CPU s | Redis commands | "
                     "load 1m |")
            L.append("|---|---|---|---|---|---|---|---|---|")
            for r in rows:
                L.append(f"| {r[key]} | {r['wall_s']:.2f} | {_n(r['changes_per_s'])} | {_n(r['keys_per_s'])} | "
                         f"{r['cpu_s']:.2f} | {r['max_rss_mb']:.1f} | {r['redis_cpu_s']:.2f} | "
                         f"{_n(r['redis_commands'])} | {r['load_avg_1m']:.2f} |")

    before_after_markdown(res, L)
    t = res.get("targets")
    if t:
        L.append("")
        L.append("## The project's targets (reported, not enforced)")
        L.append("")
        L.append("| target | goal | measured | met |")
        L.append("|---|---|---|---|")
        for x in t:
            L.append(f"| {x['target']} | {x['goal']} | {x['measured']} | {'–' if x['met'] is None else 'yes' if x['met'] else '**no**'} |")
    L.append("")
    replicas_markdown(res, L)
    return "\n".join(L)


def plots(res, out_dir):
    """PNG plots next to the report; returns their paths (none when matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths = []
    colors = {"pg_recvlogical": "#888888", "walsender": "#888888", "ideal": "#7570b3", "naive": "#d95f02",
              "walbust": "#1b9e77"}

    b = res.get("backlog")
    if b and b["summary"]:
        contenders = [c for c in ("pg_recvlogical", "naive", "walbust") if c in b["summary"]]
        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        for ax, key, title in zip(axes, ("changes_per_s", "cpu_s", "max_rss_mb"),
                                  ("row changes per second", "CPU seconds (user+sys)", "peak RSS (MB)")):
            vals = [b["summary"][c][key] if key != "max_rss_mb" else b["summary"][c][key] for c in contenders]
            ax.bar(contenders, vals, color=[colors[c] for c in contenders])
            for i, c in enumerate(contenders):
                pts = [r[key] for r in b["runs"] if r["contender"] == c and r["exit_code"] == 0]
                ax.plot([i] * len(pts), pts, "k.", markersize=6)
            ax.set_title(title)
        fig.suptitle(f"Backlog of {b['changes']:,} row changes ({res['mode']} mode): medians, dots are runs")
        fig.tight_layout()
        p = os.path.join(out_dir, "throughput.png")
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)

    lat = res.get("latency")
    if lat and lat["contenders"]:
        rates = [str(r) for r in lat["rates"]]
        # squeeze=False: with a single rate (--rates 1500) subplots would return one Axes.
        fig, axes = plt.subplots(1, len(rates), figsize=(5 * len(rates), 4), sharey=True, squeeze=False)
        axes = axes[0]
        for ax, rate in zip(axes, rates):
            for c in LATENCY_CONTENDERS:
                ph = lat["contenders"].get(c, {}).get("phases", {}).get(rate)
                if not ph or not ph["quantiles_ms"]:
                    continue
                qs = ph["quantiles_ms"]
                ys = [i / (len(qs) - 1) for i in range(len(qs))]
                # Non-positive latencies (see latency.summarize) sit at the left edge; the curve
                # starts at their share.
                ax.plot([max(q, 0.01) for q in qs], ys, label=f"{c} (p99 {ph['p99_ms']:.2f} ms)", color=colors[c])
            ax.set_xscale("log")
            ax.set_xlim(left=0.01)
            ax.set_xlabel("commit→delete (walsender: →delivered), ms, log scale")
            ax.set_title(f"{rate} txn/s" if rate != "flat out" else "flat out")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        axes[0].set_ylabel("share of transactions")
        fig.suptitle("Commit→delete latency, cumulative distribution")
        fig.tight_layout()
        p = os.path.join(out_dir, "latency.png")
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)

    sc = res.get("scaling")
    if sc:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        k = sc["keys_per_change"]
        axes[0].plot([r["keys_per_change"] for r in k], [r["wall_s"] for r in k], "o-", color=colors["walbust"])
        axes[0].set_xscale("log", base=2)
        axes[0].set_xticks([r["keys_per_change"] for r in k], [str(r["keys_per_change"]) for r in k])
        axes[0].set_xlabel("keys per row change")
        axes[0].set_ylabel("wall time (s)")
        axes[0].set_title("more keys per change")
        bt = sc["batch"]
        axes[1].plot([r["max_keys"] for r in bt], [r["wall_s"] for r in bt], "o-", color=colors["walbust"])
        axes[1].set_xscale("log")
        axes[1].set_xlabel("batch.max_keys")
        axes[1].set_title("batch size")
        ceiling = res.get("backlog", {}).get("summary", {}).get("pg_recvlogical")
        for ax in axes:
            if ceiling:
                ax.axhline(ceiling["wall_s"], color=colors["pg_recvlogical"], linestyle="--",
                           label="pg_recvlogical (backlog median)")
                ax.legend(fontsize=8)
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
        fig.suptitle("walbust scaling on the backlog")
        fig.tight_layout()
        p = os.path.join(out_dir, "scaling.png")
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths
