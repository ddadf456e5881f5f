"""Commit→delete latency, measured from outside the consumer.

A writer commits single-row UPDATEs and notes when each COMMIT returned; a subscriber
thread of the same process receives Redis keyspace notifications (UNLINK and DEL both emit
a "del" key event) and notes when each key went away. Both clocks are time.perf_counter(),
so the difference is the latency a reader of the cache sees, whatever the consumer is.
"""

import re
import sys
import threading
import time
import urllib.request

import psycopg2
import redis

DEL_CHANNEL = "__keyevent@0__:del"


class DeleteWatcher(threading.Thread):
    """Records the first time each key is reported deleted."""

    def __init__(self, redis_url):
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(redis_url)
        # E: key-event channel, g: generic commands (DEL, UNLINK, ...).
        self.client.config_set("notify-keyspace-events", "Eg")
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(DEL_CHANNEL)
        self.deleted = {}
        self._halt = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        while not self._halt.is_set():
            msg = self.pubsub.get_message(timeout=0.2)
            if msg is None:
                continue
            t = time.perf_counter()
            key = msg["data"]
            with self.lock:
                self.deleted.setdefault(key, t)

    def seen(self, key):
        with self.lock:
            return self.deleted.get(key)

    def stop(self):
        self._halt.set()
        self.join()
        self.pubsub.close()
        # Notifications cost Redis CPU on every delete even without subscribers: off again,
        # so later sections measure deletes alone.
        self.client.config_set("notify-keyspace-events", "")


class Writer:
    """One client committing single-row UPDATEs of blog_post."""

    def __init__(self, dsn):
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True  # each statement is its own transaction
        self.cur = self.conn.cursor()
        self.cur.execute("PREPARE touch(bigint, text) AS "
                         "UPDATE blog_post SET title = $2, updated_at = now() WHERE id = $1")

    def commit(self, post_id, tag):
        self.cur.execute("EXECUTE touch(%s, %s)", (post_id, tag))
        return time.perf_counter()

    def paced(self, post_ids, rate, tag, duration=None):
        """Commits one UPDATE per id at `rate` per second (None: as fast as it goes).

        The schedule is absolute (t0 + i/rate), so a late commit is followed by the next
        one at once instead of shifting every later one. Returns {key: commit time} and the
        achieved rate.
        """
        commits = {}
        t0 = time.perf_counter()
        for i, pid in enumerate(post_ids):
            if rate:
                target = t0 + i / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            elif duration is not None and time.perf_counter() - t0 >= duration:
                break
            commits[f"post_detail_{pid}".encode()] = self.commit(pid, tag)
        elapsed = time.perf_counter() - t0
        return commits, len(commits) / elapsed if elapsed > 0 else 0.0

    def close(self):
        self.conn.close()


def wait_for_deletes(watcher, keys, timeout):
    deadline = time.monotonic() + timeout
    pending = set(keys)
    while pending and time.monotonic() < deadline:
        pending = {k for k in pending if watcher.seen(k) is None}
        if pending:
            time.sleep(0.05)
    return len(pending)


def percentile(sorted_values, q):
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, int(-(-q * len(sorted_values) // 100)))  # ceil(q/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latencies_ms(commits, watcher):
    """Commit→delete latency of every observed key, in milliseconds, sorted."""
    out = []
    for key, t_commit in commits.items():
        t_del = watcher.seen(key)
        if t_del is not None:
            out.append((t_del - t_commit) * 1000.0)
    out.sort()
    return out


def summarize(ms, transactions, achieved_rate):
    """Percentiles of sorted latencies (ms) out of `transactions` commits."""
    return {
        "achieved_rate": achieved_rate,
        "transactions": transactions,
        "observed": len(ms),
        "missing": transactions - len(ms),
        # Deletes seen before the writer noted its COMMIT's return: the delete really is
        # that fast, and the writer thread waited for the CPU or the interpreter lock
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

_BUCKET = re.compile(r'^walbust_commit_to_delete_seconds_bucket\{(?:[^}]*,)?le="([^"]+)"[^}]*\}\s+(\S+)')


def scrape_histogram(url):
    """{le: cumulative count} of walbust_commit_to_delete_seconds, or None when not served."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    buckets = {}
    for line in text.splitlines():
        m = _BUCKET.match(line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets[le] = buckets.get(le, 0.0) + float(m.group(2))
    return buckets or None


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


def log(msg):
    print(msg, file=sys.stderr, flush=True)
