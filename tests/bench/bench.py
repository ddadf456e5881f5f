#!/usr/bin/python3
"""walbust performance benchmark: one command, its own servers, side-by-side numbers.

Sections (all by default):
  backlog  pg_recvlogical (the walsender's ceiling), a hand-written Python consumer and
           walbust read copies of the same slot up to the same end LSN;
  scaling  walbust on that backlog with 4x and 16x more keys per change and with
           batch.max_keys 100 / 1000 / 10000;
  latency  commit→delete latency of single-row transactions, paced and flat out, timed
           outside the consumers through Redis keyspace notifications;
  large    one UPDATE of every row of a large table: walbust's peak RSS and time.

Results: tests/bench/results/latest.{md,json} and PNG plots. Nothing here passes or fails
on a timing: the project's targets are reported next to the measurements.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg2
import redis

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))  # the lab: fixtures.py

import latency  # noqa: E402
import report  # noqa: E402
import workload  # noqa: E402
from measure import (Child, WalsenderSampler, build_launcher, counters_delta, proc_cpu_seconds,  # noqa: E402
                     process_counters, wait_for_idle)
from fixtures import PG_BIN, PostgresServer, RedisServer, StandbyServer, TlsCertificates, free_port  # noqa: E402

# On top of the lab's PostgreSQL settings. Durability is not what is measured: fsync off
# keeps backlog generation fast and the numbers independent of the disk. synchronous_commit
# stays on so a commit returns only once its WAL is written, which the latency test relies on.
PG_SETTINGS = {
    "max_wal_senders": "16",
    "max_replication_slots": "32",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    "shared_buffers": "256MB",
    # No checkpoint in the middle of a measured run.
    "max_wal_size": "8GB",
    "checkpoint_timeout": "1h",
    "autovacuum": "off",
}

# Sizes. The full backlog is the one the project's targets speak of: 500k row changes,
# 400k from two UPDATEs of a 200k-row table and 100k single-row transactions.
SIZES = {
    "quick": {"rows": 50_000, "big_updates": 2, "small_txns": 20_000, "repeat": 2,
              "latency_s": 3.0, "large_rows": 200_000, "scaling": True},
    "full": {"rows": 200_000, "big_updates": 2, "small_txns": 100_000, "repeat": 3,
             "latency_s": 10.0, "large_rows": 1_000_000, "scaling": True},
}
DEFAULT_RATES = "500,1500,5000,10000,flat"  # flat: one writer as fast as it goes
# "walsender": no cache consumer; the probe streams the slot itself and times each Commit's
# arrival, the floor of any consumer's latency (as pg_recvlogical is of its throughput).
# "ideal": the probe streams the slot and UNLINKs the blog rules' keys itself, pipelined:
# the floor of any cache consumer on this machine, the one walbust is held against.
LATENCY_CONTENDERS = ("walsender", "ideal", "naive", "walbust")
BACKLOG_CONTENDERS = ("pg_recvlogical", "naive", "walbust", "walbust_tls")
# --baseline: an earlier walbust measured beside the current one, in the backlog and
# latency sections, so a change is judged on one machine in one run. Named by the report.
BASELINE = report.BASELINE
# The probe's mode per contender; the others run as a process and the probe watches Redis.
PROBE_MODES = {"walsender": "recv", "ideal": "ideal"}
SCALING_MULTIPLIERS = [1, 4, 16]
SCALING_BATCHES = [100, 1000, 10000]
DEFAULT_BATCH = 10000  # README "Configuration reference" default of batch.max_keys


def parse_rates(text):
    """"500,1500,flat" -> [500, 1500, None] (None: flat out)."""
    rates = []
    for part in text.split(","):
        part = part.strip()
        if part in ("flat", "flat out"):
            rates.append(None)
        elif part:
            rates.append(int(part))
    return rates


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- environment


def machine_info(pg_conn, r):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cur = pg_conn.cursor()
    cur.execute("SHOW server_version")
    pg_version = cur.fetchone()[0]
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "postgresql": pg_version,
        "redis": r.info("server")["redis_version"],
        "python": platform.python_version(),
        "psycopg2": psycopg2.__version__.split()[0],
        "redis_py": redis.__version__,
        "load_avg_start": list(os.getloadavg()),
    }


def walbust_info(binary):
    info = {"path": binary}
    info["version"] = subprocess.run([binary, "version"], capture_output=True, text=True).stdout.strip()
    # The checkout the binary was built in (a baseline's worktree), else this one.
    git = subprocess.run(["git", "-C", os.path.dirname(binary), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)
    if git.returncode != 0:
        git = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True, text=True)
    info["commit"] = git.stdout.strip() or "unknown"
    info["build_type"] = build_type(os.path.dirname(binary)) or "unknown"
    return info


def build_type(build_dir):
    cache = os.path.join(build_dir, "CMakeCache.txt")
    if os.path.exists(cache):
        with open(cache) as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    return line.split("=", 1)[1].strip()
    return None


def ensure_walbust(path):
    """The walbust binary to measure: the one given, else an up-to-date Release build.

    build/ is used when it is a Release build (the usual developer setup), otherwise
    build-release/; a Debug build would make every number meaningless.
    """
    if path:
        return os.path.abspath(path)
    build = os.path.join(REPO, "build")
    if build_type(build) not in (None, "Release"):
        build = os.path.join(REPO, "build-release")
    if build_type(build) is None:
        log(f"configuring a Release build in {build}")
        subprocess.run(["cmake", "-S", REPO, "-B", build, "-DCMAKE_BUILD_TYPE=Release"], check=True,
                       stdout=subprocess.DEVNULL)
    log(f"building walbust in {build} (incremental, -j2)")
    subprocess.run(["cmake", "--build", build, "-j2", "--target", "walbust"], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(build, "walbust")


# ---------------------------------------------------------------- contenders


class Bench:
    def __init__(self, args, sizes, walbust, pg, rds, work, certs, rds_tls_port):
        self.args, self.sizes, self.walbust, self.pg, self.rds, self.work = args, sizes, walbust, pg, rds, work
        # The same Redis process also listens for TLS (no client certificate), so the TLS
        # and the plain contender measure against one server.
        self.certs, self.rds_tls_port = certs, rds_tls_port
        # Every contender connects as the superuser, as the harness itself does.
        self.dsn = pg.conninfo("postgres", workload.DATABASE)
        self.conn = workload.connect(self.dsn)
        self.r = redis.Redis.from_url(rds.url)
        self.probe = latency.Probe(latency.build_probe(work), self.dsn, rds.port, work)
        self.run_counter = 0
        self.rates = parse_rates(args.rates)

    def backlog_contenders(self):
        return BACKLOG_CONTENDERS + ((BASELINE,) if self.args.baseline else ())

    def latency_contenders(self):
        every = LATENCY_CONTENDERS + ((BASELINE,) if self.args.baseline else ())
        return tuple(c for c in every if not self.args.contenders or c in self.args.contenders)

    def _name(self, what):
        self.run_counter += 1
        return f"{what}_{self.run_counter}"

    def walbust_config(self, slot, rules, max_keys=DEFAULT_BATCH, metrics_port=None, replica_dsn=None, tls=False):
        state = tempfile.mkdtemp(prefix="state-", dir=self.work)
        redis_section = f'url: "{self.rds.url}"'
        if tls:
            redis_section = (f'url: "rediss://127.0.0.1:{self.rds_tls_port}/0"\n'
                             f'  tls: {{ca_file: "{self.certs.ca}"}}')
        path = os.path.join(self.work, f"{slot}.yaml")
        listen = f"127.0.0.1:{metrics_port}" if metrics_port else ""
        with open(path, "w") as f:
            f.write(f"""postgres:
  dsn: "{self.dsn}"
  slot: {slot}
  publication: {workload.PUBLICATION}
  create_slot: false
  status_interval: 1s
redis:
  {redis_section}
rules: ["{rules}"]
batch: {{max_keys: {max_keys}}}
state_dir: "{state}"
metrics: {{listen: "{listen}"}}
log: {{level: info}}
""")
            if replica_dsn:
                f.write(f"""replicas:
  dsns: ["{replica_dsn}"]
  poll_interval: 10ms
  grace: 100ms
  max_wait: 30s
""")
        return path

    def start(self, contender, slot, endpos=None, rules=None, max_keys=DEFAULT_BATCH, metrics_port=None,
              wrap=None, replica_dsn=None):
        logf = os.path.join(self.work, f"{slot}.log")
        if contender == "pg_recvlogical":
            cmd = [f"{PG_BIN}/pg_recvlogical", "-d", self.dsn, "--slot", slot, "--start", "--no-loop",
                   "-o", "proto_version=1", "-o", f"publication_names={workload.PUBLICATION}",
                   "-f", "/dev/null"]
            if endpos:
                cmd += ["--endpos", endpos]
        elif contender == "naive":
            cmd = ["/usr/bin/python3", os.path.join(HERE, "naive_consumer.py"), "--dsn", self.dsn,
                   "--slot", slot, "--publication", workload.PUBLICATION, "--redis-url", self.rds.url]
            if endpos:
                cmd += ["--endpos", endpos]
        elif contender in ("walbust", "walbust_tls", BASELINE):
            cfg = self.walbust_config(slot, rules or os.path.join(REPO, "rules", "blog.yaml"), max_keys, metrics_port,
                                      replica_dsn, tls=contender == "walbust_tls")
            binary = self.args.baseline if contender == BASELINE else self.walbust
            cmd = [binary, "run", "-c", cfg]
            if endpos:
                cmd += ["--endpos", endpos]
        else:
            raise ValueError(contender)
        idle = wait_for_idle(self.args.settle) if self.args.settle > 0 else None
        return Child((wrap or []) + cmd, logf, timeout=self.args.run_timeout, idle_before=idle)

    def measured_run(self, contender, source_slot, endpos, changes, keys_per_change, **kw):
        """Copies the source slot, lets one contender read it to endpos, and measures it."""
        slot = self._name(contender.replace("pg_", ""))
        workload.copy_slot(self.conn, source_slot, slot)
        if contender != "pg_recvlogical":
            self.r.flushall()
            self.prefill()
        sampler = WalsenderSampler(self.dsn, slot)
        sampler.start()
        redis_cpu = proc_cpu_seconds(self.rds.proc.pid)
        redis_cmds = self.r.info("stats")["total_commands_processed"]
        child = self.start(contender, slot, endpos=endpos, **kw)
        res = child.wait()
        sampler.stop()
        res["walsender_cpu_s"] = sampler.cpu
        # On two cores the walsender needs one; whatever the consumer and Redis burn besides
        # competes for the other, so their CPU matters as much as the consumer's own.
        res["redis_cpu_s"] = proc_cpu_seconds(self.rds.proc.pid) - redis_cpu
        # Commands, not keys: walbust sends several keys per UNLINK, so this shows how well
        # deletes were batched (the INFO call itself counts one).
        res["redis_commands"] = self.r.info("stats")["total_commands_processed"] - redis_cmds - 1
        if res["exit_code"] != 0:
            log(f"  {contender} exited with {res['exit_code']}:\n{child.log_tail()}")
        res["contender"] = contender
        res["changes"] = changes
        res["changes_per_s"] = changes / res["wall_s"]
        if contender != "pg_recvlogical":
            res["keys"] = changes * keys_per_change
            res["keys_per_s"] = res["keys"] / res["wall_s"]
            # Every prefilled key belongs to a row the backlog changed: any key left over
            # is an invalidation that was missed.
            res["redis_keys_left"] = self.r.dbsize()
        if contender == "naive" and res["stdout"].strip():
            res["naive_counters"] = json.loads(res["stdout"].strip().splitlines()[-1])
        res.pop("stdout", None)
        # The contender must have acknowledged everything up to the end position: proof that
        # it stopped at the end and not before it.
        res["acknowledged_to_endpos"] = workload.acknowledged(self.conn, slot, endpos)
        if not res["acknowledged_to_endpos"]:
            log(f"  {contender} stopped without acknowledging up to {endpos}")
        workload.drop_slot(self.conn, slot)
        log(f"  {contender:<15} {res['wall_s']:7.2f} s  {res['changes_per_s']:>9,.0f} changes/s  "
            f"cpu {res['cpu_s']:6.2f} s  redis cpu {res['redis_cpu_s']:5.2f} s  rss {res['max_rss_mb']:6.1f} MB  "
            f"load {res['load_avg_1m']:.2f}  idle before {fmt_pct(res['idle_before'])}")
        return res

    def prefill(self, rows=None):
        workload.prefill_redis(self.r, range(1, (rows or self.table_rows) + 1))

    # ------------------------------------------------------------ sections

    def load_posts(self):
        self.table_rows = self.sizes["rows"]
        log(f"loading {self.table_rows:,} posts")
        workload.add_posts(self.conn, 1, self.table_rows)

    def build_backlog(self):
        s = self.sizes
        # The publication exists before the slot, as decoding requires.
        workload.create_slot(self.conn, "backlog_src")
        t0 = time.perf_counter()
        changes = 0
        per_round = s["small_txns"] // s["big_updates"]
        for k in range(s["big_updates"]):
            changes += workload.update_all(self.conn, f"big{k}")
            workload.small_transactions(self.conn, per_round, s["rows"], f"small{k}")
            changes += per_round
        self.backlog_endpos = workload.current_lsn(self.conn)
        self.backlog_changes = changes
        self.backlog_txns = s["big_updates"] + per_round * s["big_updates"]
        log(f"backlog: {changes:,} row changes in {self.backlog_txns:,} transactions, built in "
            f"{time.perf_counter() - t0:.1f} s, endpos {self.backlog_endpos}")

    def backlog(self):
        runs = []
        for rep in range(self.sizes["repeat"]):
            log(f"backlog comparison, run {rep + 1}/{self.sizes['repeat']}")
            # walbust_tls: the same walbust over rediss:// to the same Redis (its TLS port).
            for contender in self.backlog_contenders():
                res = self.measured_run(contender, "backlog_src", self.backlog_endpos, self.backlog_changes,
                                        workload.KEYS_PER_CHANGE)
                res["run"] = rep + 1
                runs.append(res)
        if self.args.profile:
            runs_profile = self.profile()
        else:
            runs_profile = None
        summary = summarize_runs(runs)
        for c in self.backlog_contenders():
            if c in summary:
                # Cost per unit of work, comparable with the latency runs' (medians).
                summary[c]["cpu_s_per_1m_changes"] = summary[c]["cpu_s"] * 1e6 / self.backlog_changes
                summary[c]["vcsw_per_1k_txn"] = summary[c]["vcsw"] * 1e3 / self.backlog_txns
        return {"changes": self.backlog_changes, "transactions": self.backlog_txns, "profile": runs_profile,
                "keys_per_change": workload.KEYS_PER_CHANGE, "table_rows": self.table_rows,
                "endpos": self.backlog_endpos, "runs": runs, "summary": summary}

    def profile(self):
        """Extra walbust runs on the backlog, not part of the timings: `perf stat` (context
        switches show how often the two threads hand work over), then `perf record` (sampled
        CPU time with call graphs) with the blog rules and with 16x more keys per change, where
        walbust rather than the walsender is the limit. Written to results/profile-walbust.txt."""
        stat = os.path.join(self.work, "perf-stat.txt")
        log("counting walbust's context switches on the backlog with perf stat")
        self.measured_run("walbust", "backlog_src", self.backlog_endpos, self.backlog_changes,
                          workload.KEYS_PER_CHANGE,
                          wrap=["perf", "stat", "-e", "task-clock,context-switches,cpu-migrations,page-faults",
                                "-o", stat, "--"])
        with open(stat) as f:
            text = [f"walbust reading the backlog of {self.backlog_changes:,} changes "
                    f"({self.backlog_txns:,} transactions), all threads",
                    "## perf stat (blog rules, 4 keys per change)",
                    "\n".join(line.strip() for line in f if line.strip() and not line.startswith("#"))]
        text.append("On a virtual machine, cpu-clock samples of a task resumed after sleeping land in "
                    "finish_task_switch: read its share as time spent switching in and out.")
        x16 = os.path.join(self.work, "rules-x16.yaml")
        with open(x16, "w") as f:
            f.write(workload.scaled_rules(16))
        for label, rules, kpc in (("blog rules, 4 keys per change", None, workload.KEYS_PER_CHANGE),
                                  ("16x rules, 64 keys per change", x16, 16 * workload.KEYS_PER_CHANGE)):
            data = os.path.join(self.work, "perf.data")
            log(f"profiling walbust on the backlog with perf record ({label})")
            self.measured_run("walbust", "backlog_src", self.backlog_endpos, self.backlog_changes, kpc, rules=rules,
                              wrap=["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-g", "-o", data, "--"])
            for title, extra in (("self time", ["--no-children", "--sort", "dso,symbol"]),
                                 ("time including callees", ["--children", "--sort", "symbol"])):
                r = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none", "--percent-limit", "0.7"]
                                   + extra, capture_output=True, text=True)
                # perf pads every line to the width of its widest symbol; keep the text only.
                lines = [re.sub(r"\s+", " ", re.sub(r"(\s+-)+\s*$", "", line)).strip()
                         for line in r.stdout.splitlines() if line.strip() and not line.startswith("#")]
                text.append(f"## perf record -e cpu-clock -g, {label}: {title}\n\n" + "\n".join(lines))
        os.makedirs(self.args.out, exist_ok=True)
        path = os.path.join(self.args.out, "profile-walbust.txt")
        with open(path, "w") as f:
            f.write("\n\n".join(text) + "\n")
        log(f"  profile written to {path}")
        return path

    def scaling(self):
        out = {"keys_per_change": [], "batch": []}
        for mult in SCALING_MULTIPLIERS:
            rules = os.path.join(self.work, f"rules-x{mult}.yaml")
            with open(rules, "w") as f:
                f.write(workload.scaled_rules(mult))
            log(f"scaling: {mult * workload.KEYS_PER_CHANGE} keys per change")
            res = self.measured_run("walbust", "backlog_src", self.backlog_endpos, self.backlog_changes,
                                    mult * workload.KEYS_PER_CHANGE, rules=rules)
            res["multiplier"] = mult
            res["keys_per_change"] = mult * workload.KEYS_PER_CHANGE
            out["keys_per_change"].append(res)
        for max_keys in SCALING_BATCHES:
            log(f"scaling: batch.max_keys {max_keys}")
            res = self.measured_run("walbust", "backlog_src", self.backlog_endpos, self.backlog_changes,
                                    workload.KEYS_PER_CHANGE, max_keys=max_keys)
            res["max_keys"] = max_keys
            out["batch"].append(res)
        return out

    def replicas(self):
        """walbust on the backlog with one caught-up read replica configured and with none,
        alternating in the same run: the cost of holding every key until the replica's
        replay position is read and of deleting it a second time."""
        standby = StandbyServer(self.pg)
        try:
            runs = []
            for rep in range(self.sizes["repeat"]):
                for label, dsn in (("none", None), ("one caught-up replica", standby.dsn)):
                    log(f"replicas: {label}, run {rep + 1}/{self.sizes['repeat']}")
                    res = self.measured_run("walbust", "backlog_src", self.backlog_endpos, self.backlog_changes,
                                            workload.KEYS_PER_CHANGE, replica_dsn=dsn)
                    res["replicas"] = label
                    res["run"] = rep + 1
                    runs.append(res)
            return {"changes": self.backlog_changes, "runs": runs}
        finally:
            standby.close()

    def latency(self):
        """Runs the latency session `repeat` times per consumer, alternating them, and
        pools each rate's samples over the runs (the p99 of every run is kept too)."""
        workload.drop_slot(self.conn, "backlog_src")  # done with it: stop retaining its WAL
        out = {"rates": [r or "flat out" for r in self.rates], "duration_s": self.sizes["latency_s"],
               "repeat": self.sizes["repeat"], "contenders": {}, "runs": [], "walbust_metrics": None}
        out["floor"] = self.latency_floor()
        pooled = {}
        for rep in range(self.sizes["repeat"]):
            for contender in self.latency_contenders():
                phases, process, samples = self.latency_session(contender, rep + 1, out)
                out["runs"].append({"contender": contender, "run": rep + 1, "phases": phases, "process": process})
                for label, ms in samples.items():
                    pooled.setdefault((contender, label), []).extend(ms)
        for contender in self.latency_contenders():
            phases = {}
            for rate in out["rates"]:
                label = str(rate)
                runs = [r["phases"][label] for r in out["runs"] if r["contender"] == contender and label in r["phases"]]
                if not runs:
                    continue
                ms = sorted(pooled.get((contender, label), []))
                s = latency.summarize(ms, sum(r["transactions"] for r in runs),
                                      statistics.mean(r["achieved_rate"] for r in runs))
                s["p99_ms_per_run"] = [r["p99_ms"] for r in runs]
                s["load_avg_1m"] = [r["load_avg_1m"] for r in runs]
                metric = [r["walbust_metric"] for r in runs if r.get("walbust_metric")]
                if metric:
                    s["walbust_metric"] = metric[-1]
                costs = [r["cost"] for r in runs if r.get("cost")]
                if costs:
                    s["cost"] = {k: sum(c[k] for c in costs) for k in costs[0]}
                    s.update(latency.cost_per_unit(s["cost"], sum(r["transactions"] for r in runs if r.get("cost"))))
                phases[label] = s
            out["contenders"][contender] = {"phases": phases}
        out["ratios"] = latency_ratios(out["contenders"])
        if out["walbust_metrics"] is None:
            out["walbust_metrics"] = ("not served: GET /metrics on this build of walbust answers nothing, "
                                      "so walbust_commit_to_delete_seconds is not reported")
        return out

    def latency_floor(self):
        """The measurement's own noise: the probe deletes each key itself right away, so
        what it reports is only notification delivery and the probe's threads."""
        self.r.flushall()
        floor = {}
        for rate in self.rates:
            label = str(rate) if rate else "flat out"
            n = int((rate or 20_000) * self.sizes["latency_s"])
            rows, achieved, _ = self.probe.run("floor", 1, n, rate, self.sizes["latency_s"], wait_s=10)
            s = latency.summarize(latency.latencies_ms(rows), len(rows), achieved)
            s.pop("quantiles_ms")
            floor[label] = s
            log(f"latency floor at {label} (the probe deleting itself, {achieved:,.0f}/s): "
                f"p50 {fmt_ms(s['p50_ms'])}  p99 {fmt_ms(s['p99_ms'])}  max {fmt_ms(s['max_ms'])}")
        self.r.flushall()
        return floor

    def latency_session(self, contender, run, out):
        slot = self._name(f"lat_{contender}")
        workload.create_slot(self.conn, slot)
        self.r.flushall()
        metrics_port = free_port() if contender in ("walbust", BASELINE) else None
        child = None if contender in PROBE_MODES else self.start(contender, slot, metrics_port=metrics_port)
        mode, probe_slot = (PROBE_MODES[contender], slot) if child is None else ("pg", None)
        phases, samples = {}, {}
        try:
            # Warm-up: the consumer is streaming once a first delete comes through.
            warm = self.table_rows
            self.r.set(f"post_detail_{warm}", b"x")
            rows, _, _ = self.probe.run(mode, warm, 1, wait_s=60, slot=probe_slot)
            pid = child.contender_pid() if child else None
            if latency.missing(rows):
                detail = child.log_tail() if child else "the probe's own replication connection"
                raise RuntimeError(f"{contender} did not deliver anything within 60 s:\n{detail}")
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None
            for rate in self.rates:
                label = str(rate) if rate else "flat out"
                # Distinct posts within a phase, so every key is deleted exactly once; each
                # phase starts over once the previous one's deletes were all seen. Flat out
                # may take the whole table (it is bounded by time, not count).
                n = min(int(rate * self.sizes["latency_s"]) if rate else self.table_rows, self.table_rows) - 1
                first = 1
                workload.prefill_redis(self.r, range(first, first + n), base_keys=False)
                before = latency.scrape_histograms(metrics_url) if metrics_url else None
                log(f"latency run {run}: {contender} at {label} txn/s for {self.sizes['latency_s']:.0f} s")
                # Before every phase, whoever the consumer is (the probe's own consumers are not
                # started through start(), which waits for its contenders).
                idle = wait_for_idle(self.args.settle) if self.args.settle > 0 else None
                load = os.getloadavg()[0]
                counters = process_counters(pid) if pid else None
                rows, achieved, cost = self.probe.run(mode, first, n, rate, self.sizes["latency_s"], wait_s=120,
                                                      slot=probe_slot)
                if pid:
                    cost = counters_delta(counters, process_counters(pid))
                if latency.missing(rows):
                    log(f"  {latency.missing(rows)} deletes not observed within 120 s")
                ms = latency.latencies_ms(rows)
                summary = latency.summarize(ms, len(rows), achieved)
                summary.pop("quantiles_ms")  # the pooled distribution is kept instead
                summary["load_avg_1m"] = load
                summary["idle_before"] = idle
                # The consumer's cost in this phase: its process (from /proc) or, for the
                # probe's own consumers, that thread (getrusage).
                summary["cost"] = cost
                summary.update(latency.cost_per_unit(cost, len(rows)))
                if metrics_url:
                    after = latency.scrape_histograms(metrics_url)
                    if before is not None and after is not None:
                        # walbust's own view: commit→delete, and how much of it passed before
                        # walbust read the Commit (PostgreSQL's share).
                        summary["walbust_metric"] = {
                            f"{prefix}p{int(q * 100)}_ms": (v * 1000 if v is not None else None)
                            for which, prefix in (("delete", ""), ("receive", "receive_"))
                            for q in (0.5, 0.99)
                            for v in [latency.histogram_quantile(q, before[which], after[which])]}
                        out["walbust_metrics"] = "served"
                phases[label] = summary
                samples[label] = ms
                log(f"  achieved {achieved:,.0f} txn/s: p50 {fmt_ms(summary['p50_ms'])}  "
                    f"p99 {fmt_ms(summary['p99_ms'])}  max {fmt_ms(summary['max_ms'])}  load {load:.2f}  "
                    f"idle before {fmt_pct(idle)}  "
                    f"cpu/1M {fmt_num(summary.get('cpu_s_per_1m_changes'))} s  "
                    f"vcsw/1k {fmt_num(summary.get('vcsw_per_1k_txn'))}")
        finally:
            process = {}
            if child:
                child.terminate()
                process = child.wait()
            workload.drop_slot(self.conn, slot)
        process.pop("stdout", None)
        return phases, process, samples

    def large(self):
        rows = self.sizes["large_rows"]
        if rows > self.table_rows:
            log(f"large transaction: growing blog_post to {rows:,} rows")
            workload.add_posts(self.conn, self.table_rows + 1, rows)
            self.table_rows = rows
        workload.create_slot(self.conn, "large_src")
        log(f"large transaction: one UPDATE of {rows:,} rows")
        t0 = time.perf_counter()
        changed = workload.update_all(self.conn, "large")
        update_s = time.perf_counter() - t0
        endpos = workload.current_lsn(self.conn)
        out = {"rows": changed, "update_s": update_s, "runs": []}
        for contender in ("pg_recvlogical", "walbust"):
            res = self.measured_run(contender, "large_src", endpos, changed, workload.KEYS_PER_CHANGE)
            out["runs"].append(res)
        workload.drop_slot(self.conn, "large_src")
        return out


def latency_ratios(contenders):
    """The event loop rework's yardsticks: walbust's p99 against the ideal consumer's at
    10,000 txn/s and against the walsender's at 5,000 txn/s, and the writer's flat-out rate
    with walbust against with the ideal consumer (None where a phase is missing)."""
    def get(contender, label, key):
        return contenders.get(contender, {}).get("phases", {}).get(label, {}).get(key)

    def ratio(a, b):
        return a / b if a is not None and b else None

    def median_run(contender, label):
        # One run that fell behind for a whole phase dominates a pooled p99; the median of
        # the runs' own p99s says what a typical run did.
        runs = [v for v in get(contender, label, "p99_ms_per_run") or [] if v is not None]
        return statistics.median(runs) if runs else None

    return {
        "walbust_p99/ideal_p99@10000": ratio(get("walbust", "10000", "p99_ms"), get("ideal", "10000", "p99_ms")),
        "walbust_p99/walsender_p99@5000": ratio(get("walbust", "5000", "p99_ms"),
                                                get("walsender", "5000", "p99_ms")),
        "walbust_rate/ideal_rate@flat": ratio(get("walbust", "flat out", "achieved_rate"),
                                              get("ideal", "flat out", "achieved_rate")),
        "median_run_p99 walbust/ideal@10000": ratio(median_run("walbust", "10000"), median_run("ideal", "10000")),
        "median_run_p99 walbust/ideal@5000": ratio(median_run("walbust", "5000"), median_run("ideal", "5000")),
        "median_run_p99 walbust/walsender@5000": ratio(median_run("walbust", "5000"),
                                                      median_run("walsender", "5000")),
    }


def summarize_runs(runs):
    """Median and spread per contender over the repetitions."""
    out = {}
    for contender in BACKLOG_CONTENDERS + (BASELINE,):
        rs = [r for r in runs if r["contender"] == contender and r["exit_code"] == 0]
        if not rs:
            continue
        walls = [r["wall_s"] for r in rs]
        med = statistics.median(walls)
        out[contender] = {
            "runs": len(rs),
            "wall_s": med,
            "wall_min_s": min(walls),
            "wall_max_s": max(walls),
            "spread_pct": 100.0 * (max(walls) - min(walls)) / med if med else 0.0,
            "changes_per_s": statistics.median(r["changes_per_s"] for r in rs),
            "keys_per_s": statistics.median(r["keys_per_s"] for r in rs) if "keys_per_s" in rs[0] else None,
            "cpu_s": statistics.median(r["cpu_s"] for r in rs),
            "max_rss_mb": max(r["max_rss_mb"] for r in rs),
            "vcsw": statistics.median(r["vcsw"] for r in rs),
            "ivcsw": statistics.median(r["ivcsw"] for r in rs),
            "walsender_cpu_s": statistics.median(r["walsender_cpu_s"] or 0.0 for r in rs),
            "redis_cpu_s": statistics.median(r["redis_cpu_s"] for r in rs),
            "redis_commands": statistics.median(r["redis_commands"] for r in rs),
        }
    if "walbust" in out:
        w = out["walbust"]["wall_s"]
        for other in ("pg_recvlogical", "naive"):
            if other in out:
                out[f"walbust/{other}"] = w / out[other]["wall_s"]
        if "walbust_tls" in out:
            out["walbust_tls/walbust"] = out["walbust_tls"]["wall_s"] / w
            out["walbust_tls/walbust_cpu"] = out["walbust_tls"]["cpu_s"] / out["walbust"]["cpu_s"]
        if BASELINE in out:
            out[f"walbust/{BASELINE}"] = w / out[BASELINE]["wall_s"]
    return out


def fmt_pct(v):
    return "n/a" if v is None else f"{100 * v:.0f}%"


def fmt_num(v):
    return "n/a" if v is None else f"{v:,.1f}"


def fmt_ms(v):
    return "n/a" if v is None else f"{v:.2f} ms"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, under 3 minutes")
    p.add_argument("--repeat", type=int, help="repetitions of the backlog comparison (quick 2, full 3)")
    p.add_argument("--walbust", help="walbust binary (default: build/walbust, built in Release if missing)")
    p.add_argument("--baseline", help="another walbust binary (an earlier commit's Release build) measured in "
                                      f"the same run as contender '{BASELINE}', for a before/after comparison")
    p.add_argument("--sections", default="backlog,scaling,replicas,latency,large",
                   help="comma-separated subset of backlog,scaling,replicas,latency,large")
    p.add_argument("--rates", default=DEFAULT_RATES,
                   help="latency: comma-separated txn/s of the paced phases, 'flat' for flat out "
                        f"(default {DEFAULT_RATES})")
    p.add_argument("--contenders",
                   help="latency: comma-separated subset of the contenders to measure (default: all; "
                        f"{', '.join(LATENCY_CONTENDERS)}, and {BASELINE} with --baseline)")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="results directory")
    p.add_argument("--run-timeout", type=float, default=1800, help="seconds after which a contender is killed")
    p.add_argument("--settle", type=float,
                   help="before each run, wait up to this many seconds for the CPUs to be 85%% idle "
                        "(default 1 quick, 10 full; 0: do not wait)")
    p.add_argument("--keep-work", action="store_true", help="keep configs and logs of the contenders")
    p.add_argument("--profile", action="store_true",
                   help="also profile one walbust backlog run with perf (results/profile-walbust.txt)")
    args = p.parse_args()

    mode = "quick" if args.quick else "full"
    if args.settle is None:
        args.settle = 1.0 if args.quick else 10.0
    sizes = dict(SIZES[mode])
    if args.repeat:
        sizes["repeat"] = args.repeat
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if args.contenders:
        args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    walbust = ensure_walbust(args.walbust)
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)

    started = time.time()
    work = tempfile.mkdtemp(prefix="walbust-bench-")
    pg = PostgresServer(settings=PG_SETTINGS)
    certs = TlsCertificates()
    rds_tls_port = free_port()
    rds = RedisServer(extra_args=["--tls-port", str(rds_tls_port), "--tls-cert-file", certs.server_cert,
                                  "--tls-key-file", certs.server_key, "--tls-ca-cert-file", certs.ca,
                                  "--tls-auth-clients", "no"])
    try:
        conn = workload.create_database(pg)
        r = redis.Redis.from_url(rds.url)
        results = {
            "mode": mode,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "sizes": sizes,
            "machine": machine_info(conn, r),
            "walbust": walbust_info(walbust),
        }
        if args.baseline:
            results["baseline"] = walbust_info(args.baseline)
        conn.close()
        log(f"mode {mode}; {results['machine']['nproc']} CPUs ({results['machine']['cpu_model']}), "
            f"load {results['machine']['load_avg_start'][0]:.2f}; walbust {results['walbust']['commit']} "
            f"({results['walbust']['build_type']})")
        Child.launcher = build_launcher(work)
        bench = Bench(args, sizes, walbust, pg, rds, work, certs, rds_tls_port)
        bench.load_posts()
        if {"backlog", "scaling", "replicas"} & set(sections):
            bench.build_backlog()
        if "backlog" in sections:
            results["backlog"] = bench.backlog()
        if "scaling" in sections and sizes["scaling"]:
            results["scaling"] = bench.scaling()
        if "replicas" in sections:
            results["replicas"] = bench.replicas()
        if "latency" in sections:
            results["latency"] = bench.latency()
        if "large" in sections:
            results["large"] = bench.large()
        results["machine"]["load_avg_end"] = list(os.getloadavg())
        results["duration_s"] = time.time() - started
        results["targets"] = report.targets(results)
        os.makedirs(args.out, exist_ok=True)
        md = report.markdown(results)
        with open(os.path.join(args.out, "latest.md"), "w") as f:
            f.write(md)
        with open(os.path.join(args.out, "latest.json"), "w") as f:
            json.dump(results, f, indent=1)
        plots = report.plots(results, args.out)
        print(md)
        log(f"wrote {args.out}/latest.md, latest.json{''.join(', ' + os.path.basename(x) for x in plots)} "
            f"in {results['duration_s']:.0f} s")
    finally:
        rds.close()
        certs.close()
        pg.close()
        if args.keep_work:
            log(f"contender configs and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
