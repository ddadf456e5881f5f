"""Commit→delete latency, measured from outside the consumer.

The instrument is latency_probe.c (see there): a writer thread commits single-row UPDATEs
and notes when each COMMIT returned, a watcher thread of the same process receives Redis
keyspace notifications (UNLINK and DEL both emit a "del" key event) and notes when each key
went away, both on CLOCK_MONOTONIC. The difference is the latency a reader of the cache
sees, whatever the consumer is. This module builds and runs it and summarizes its output.
"""

import os
import re
import subprocess
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def build_probe(work_dir):
    """Compiles latency_probe.c (libpq, hiredis) into work_dir."""
    exe = os.path.join(work_dir, "latency_probe")
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-I/usr/include/postgresql", "-o", exe,
                    os.path.join(HERE, "latency_probe.c"), "-lpq", "-lhiredis", "-lpthread"], check=True)
    return exe


class Probe:
    """Runs latency_probe; each run returns its samples, the writer's achieved rate and, when
    the probe itself is the consumer, that consumer thread's cost."""

    def __init__(self, exe, dsn, redis_port, work_dir):
        self.exe, self.dsn, self.redis_port, self.work_dir = exe, dsn, redis_port, work_dir
        self.runs = 0

    def run(self, mode, first_id, count, rate=None, duration=3600.0, wait_s=120.0, slot=None):
        """mode "pg" (the consumer deletes), "floor" (the probe deletes itself), "recv" (the
        probe consumes `slot` and times each Commit's arrival) or "ideal" (the probe consumes
        `slot` and deletes the blog rules' keys itself); rate None: flat out.
        Returns (rows, achieved_rate, cost): rows are (id, commit_ns, delete_ns or 0); cost is
        {"cpu_s", "vcsw", "ivcsw"} of the probe's consumer thread (recv, ideal) or None."""
        self.runs += 1
        out = os.path.join(self.work_dir, f"latency-{self.runs}.txt")
        subprocess.run([self.exe, mode, self.dsn, "127.0.0.1", str(self.redis_port), str(rate or 0),
                        str(duration), str(first_id), str(count), str(wait_s), out] + ([slot] if slot else []),
                       check=True)
        rows = []
        with open(out) as f:
            header = f.readline().split()
            written, elapsed = int(header[2]), float(header[4])
            fields = dict(zip(header[5::2], header[6::2]))
            cost = None
            if "consumer_cpu_s" in fields:
                cost = {"cpu_s": float(fields["consumer_cpu_s"]), "vcsw": int(fields["consumer_vcsw"]),
                        "ivcsw": int(fields["consumer_ivcsw"])}
            for line in f:
                i, c, d = line.split()
                rows.append((int(i), int(c), int(d)))
        os.unlink(out)
        if len(rows) != written:
            raise RuntimeError(f"latency_probe wrote {len(rows)} samples for {written} transactions")
        return rows, (written / elapsed if elapsed > 0 else 0.0), cost


def missing(rows):
    return sum(1 for _, _, d in rows if d == 0)


def latencies_ms(rows):
    """Commit→delete latency of every observed delete, in milliseconds, sorted."""
    return sorted((d - c) / 1e6 for _, c, d in rows if d != 0)


def percentile(sorted_values, q):
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, int(-(-q * len(sorted_values) // 100)))  # ceil(q/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(ms, transactions, achieved_rate):
    """Percentiles of sorted latencies (ms) out of `transactions` commits."""
    return {
        "achieved_rate": achieved_rate,
        "transactions": transactions,
        "observed": len(ms),
        "missing": transactions - len(ms),
        # Deletes seen before the writer noted its COMMIT's return: the delete really is
        # that fast, and the writer thread waited for a CPU
        # before it could read the clock. Kept in the distribution, counted here.
        "before_commit_returned": sum(1 for v in ms if v <= 0),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1] if ms else None,
        "min_ms": ms[0] if ms else None,
        # A compact description of the distribution for plots: 201 quantiles.
        "quantiles_ms": [percentile(ms, q / 2) for q in range(0, 201)] if ms else [],
    }


# ---- walbust's own histogram, when the metrics endpoint is served ----

_BUCKET = re.compile(r'^(walbust_commit_to_(?:delete|receive)_seconds)_bucket\{(?:[^}]*,)?le="([^"]+)"[^}]*\}\s+(\S+)')


def scrape_histograms(url):
    """{"delete": {le: cumulative count}, "receive": {...}} of walbust's
    walbust_commit_to_delete_seconds (summed over targets) and
    walbust_commit_to_receive_seconds, or None when the endpoint does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    out = {"delete": {}, "receive": {}}
    for line in text.splitlines():
        m = _BUCKET.match(line)
        if m:
            which = "delete" if m.group(1).endswith("delete_seconds") else "receive"
            le = float("inf") if m.group(2) == "+Inf" else float(m.group(2))
            out[which][le] = out[which].get(le, 0.0) + float(m.group(3))
    return out if out["delete"] else None


def histogram_quantile(q, before, after):
    """Prometheus-style quantile (linear within a bucket) of the observations between two scrapes."""
    if before is None or after is None:
        return None
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b, c in zip(bounds, counts):
        if c >= rank:
            if b == float("inf"):
                return prev_bound
            return prev_bound + (b - prev_bound) * ((rank - prev_count) / (c - prev_count) if c > prev_count else 0)
        prev_bound, prev_count = b, c
    return bounds[-2] if len(bounds) > 1 else None


def cost_per_unit(cost, transactions):
    """CPU seconds per 1M changes and context switches per 1,000 transactions (one change
    per transaction in the latency runs) of a {"cpu_s", "vcsw", "ivcsw"} total."""
    if not cost or not transactions:
        return {}
    return {"cpu_s_per_1m_changes": cost["cpu_s"] * 1e6 / transactions,
            "vcsw_per_1k_txn": cost["vcsw"] * 1e3 / transactions,
            "ivcsw_per_1k_txn": cost["ivcsw"] * 1e3 / transactions}


def log(msg):
    print(msg, file=sys.stderr, flush=True)
