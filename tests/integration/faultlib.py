"""Shared machinery of the fault-injection suite (tests/integration/fault_*.py).

The oracle. Every fault scenario drives seeded transactions on one table, fault_event
(id, k, grp, payload), whose rules give every row change keys of its own:

    insert            -> ev:ins:{k}
    update            -> ev:upd:{new k}  and  ev:old:{old k}
    delete            -> ev:del:{k}

Each k value is used by exactly one row version (updates always move k to a fresh value),
so each key is derived by at most one change in the whole history. All four keys of a k
value are SET in Redis when the value is generated, before any transaction can use it.
A key that is absent after walbust caught up was therefore deleted because walbust
processed the one change that derives it: a lost invalidation cannot hide behind a
later change's delete. Row triggers record every committed change in the unpublished
table fault_audit (an oracle independent of walbust: a transaction whose COMMIT was cut
off by a crash is in it exactly when it committed). Keys generated but never derived by
a committed change (rolled-back transactions, untouched rows) must survive: walbust
deletes nothing it was not asked to.

The catch-up point is a marker row (Walbust.sync()): walbust handles transactions in
commit order, so once the marker's key is gone every earlier transaction was handled.
"""

import json
import os
import random
import re
import sys
import threading
import time
import unittest
import urllib.request

import psycopg2
import redis as redis_py

import fixtures
from fixtures import MARKER_TABLE, Lsn, PostgresServer, RedisServer, Walbust

SANITIZED = fixtures.binary_is_sanitized()
# Sanitized builds run several times slower: stretch waits, never the assertions.
SLOW = 4 if SANITIZED else 1


def repeat(default):
    """How many times each scenario runs: WALBUST_FAULT_REPEAT overrides the default."""
    value = os.environ.get("WALBUST_FAULT_REPEAT")
    return max(1, int(value)) if value else default


def log(msg):
    print(f"[fault] {msg}", file=sys.stderr, flush=True)


def summary(scenario, repetitions, keys_checked, lost, **extra):
    """The line scripts and the README figures are collected from."""
    more = "".join(f" {k}={v}" for k, v in extra.items())
    print(f"fault summary: scenario={scenario} repetitions={repetitions}"
          f" keys_checked={keys_checked} lost={lost}{more}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# schema, rules and oracle

EVENT_TABLE = "fault_event"

EVENT_RULES = """\
# Fault-suite rules: every row change of fault_event derives keys no other change
# derives (see tests/integration/faultlib.py).
version: 1
rules:
  - name: event-insert
    table: fault_event
    on: [insert]
    delete: ["ev:ins:{k}"]
  - name: event-update
    table: fault_event
    on: [update]
    delete: ["ev:upd:{new.k}", "ev:old:{old.k}"]
  - name: event-delete
    table: fault_event
    on: [delete]
    delete: ["ev:del:{k}"]
"""

KEY_KINDS = ("ins", "upd", "old", "del")


def event_schema(pg, publication="walbust", extra_tables=()):
    """fault_event (REPLICA IDENTITY FULL), its audit trigger, the marker table and the
    publication (created before walbust creates its slot)."""
    tables = [EVENT_TABLE, MARKER_TABLE, *extra_tables]
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"""
                CREATE TABLE {EVENT_TABLE} (
                    id bigserial PRIMARY KEY,
                    k text NOT NULL,
                    grp int NOT NULL DEFAULT 0,
                    payload text NOT NULL DEFAULT ''
                );
                ALTER TABLE {EVENT_TABLE} REPLICA IDENTITY FULL;
                CREATE INDEX ON {EVENT_TABLE} (grp);
                CREATE TABLE {MARKER_TABLE} (id serial PRIMARY KEY, note text);
                CREATE TABLE fault_audit (
                    seq bigserial PRIMARY KEY,
                    xid bigint NOT NULL DEFAULT txid_current(),
                    op text NOT NULL,
                    old_k text,
                    new_k text
                );
                CREATE FUNCTION fault_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO fault_audit (op, old_k, new_k) VALUES (
                        lower(TG_OP),
                        CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN OLD.k END,
                        CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN NEW.k END);
                    RETURN NULL;
                END $$;
                CREATE TRIGGER fault_event_audit AFTER INSERT OR UPDATE OR DELETE
                    ON {EVENT_TABLE} FOR EACH ROW EXECUTE FUNCTION fault_audit_row();
                CREATE PUBLICATION {publication} FOR TABLE {', '.join(tables)};
            """)
    finally:
        conn.close()


def audit_mark(pg):
    return pg.query("SELECT coalesce(max(seq), 0) FROM fault_audit")[0][0]


def derived_keys(pg, since=0):
    """Keys the rules derive from every committed change with audit seq > since."""
    keys = set()
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT op, old_k, new_k FROM fault_audit WHERE seq > %s", (since,))
            for op, old_k, new_k in cur:
                if op == "insert":
                    keys.add(f"ev:ins:{new_k}")
                elif op == "update":
                    keys.add(f"ev:upd:{new_k}")
                    keys.add(f"ev:old:{old_k}")
                else:
                    keys.add(f"ev:del:{old_k}")
    finally:
        conn.close()
    return keys


class KeyPool:
    """Fresh k values whose four keys are already SET in Redis.

    Values are generated ahead in chunks, so a workload can keep committing while Redis
    is paused or down as long as the pool holds enough (see ensure()).
    """

    def __init__(self, client, tag, chunk=2000):
        self.client = client
        self.tag = tag
        self.chunk = chunk
        self.generated = []  # every value ever generated, in order
        self._next = 0  # index of the next value to hand out
        self._lock = threading.Lock()

    def _generate(self, n, timeout=60.0):
        start = len(self.generated)
        values = [f"{self.tag}{i:07d}" for i in range(start, start + n)]
        deadline = time.monotonic() + timeout
        while True:
            try:
                pipe = self.client.pipeline(transaction=False)
                for i in range(0, len(values), 500):
                    mapping = {}
                    for v in values[i:i + 500]:
                        for kind in KEY_KINDS:
                            mapping[f"ev:{kind}:{v}"] = "cached"
                    pipe.mset(mapping)
                pipe.execute()
                break
            except redis_py.exceptions.RedisError:
                # Redis is down or paused: the caller waits, as an application would.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.generated.extend(values)

    def ensure(self, n):
        """Makes sure at least n values are ready to be taken without touching Redis."""
        with self._lock:
            missing = n - (len(self.generated) - self._next)
            if missing > 0:
                self._generate(missing)

    def take(self, n):
        with self._lock:
            if len(self.generated) - self._next < n:
                self._generate(max(n, self.chunk))
            out = self.generated[self._next:self._next + n]
            self._next += n
            return out

    def all_keys(self):
        with self._lock:
            return {f"ev:{kind}:{v}" for v in self.generated for kind in KEY_KINDS}


_PG_DOWN = (psycopg2.OperationalError, psycopg2.InterfaceError)


class EventWorkload:
    """Seeded transactions on fault_event: inserts, updates (k to a fresh value), deletes,
    savepoints rolled back and whole transactions rolled back.

    run(n) runs n transactions; start()/stop() run them in a background thread, riding
    out PostgreSQL outages (an error during COMMIT leaves the outcome to the audit).
    `commits` lists (xid, monotonic time COMMIT was sent) of transactions known to
    have committed.
    """

    def __init__(self, pg, pool, seed, payload=32, max_rows=3000):
        self.pg = pg
        self.pool = pool
        self.rng = random.Random(seed)
        self.payload = payload
        self.max_rows = max_rows
        self.conn = None
        self.ids = []
        self.commits = []
        self.committed = 0
        self.rolled_back = 0
        self.in_doubt = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = None
        self.failure = None

    # -- connection ----------------------------------------------------------------

    def _connect(self):
        if self.conn is None:
            self.conn = self.pg.connect(autocommit=False)
            with self.conn.cursor() as cur:
                # The rows that exist now: after an in-doubt commit only the database knows.
                cur.execute(f"SELECT id FROM {EVENT_TABLE} ORDER BY id DESC LIMIT %s",
                            (self.max_rows,))
                self.ids = [r[0] for r in cur.fetchall()]
            self.conn.commit()
        return self.conn

    def _drop_connection(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass
        self.conn = None

    # -- one transaction -----------------------------------------------------------

    def _statement(self, cur, inserted, deleted):
        rng = self.rng
        choice = rng.choices(["insert", "update", "delete"], weights=[5, 4, 2])[0]
        if len(self.ids) < 20:
            choice = "insert"
        elif len(self.ids) >= self.max_rows and choice == "insert":
            choice = "delete"  # keep the table small
        if choice == "insert":
            ks = self.pool.take(rng.randint(1, 8))
            cur.execute(
                f"INSERT INTO {EVENT_TABLE} (k, grp, payload)"
                " SELECT unnest(%s::text[]), %s, repeat('p', %s) RETURNING id",
                (ks, rng.randint(0, 9), self.payload))
            inserted.extend(r[0] for r in cur.fetchall())
            return
        targets = rng.sample(self.ids, min(len(self.ids), rng.randint(1, 5)))
        if choice == "update":
            ks = self.pool.take(len(targets))
            cur.execute(
                f"UPDATE {EVENT_TABLE} e SET k = v.k, grp = e.grp + 1"
                " FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS k) v"
                " WHERE e.id = v.id", (targets, ks))
        else:
            cur.execute(f"DELETE FROM {EVENT_TABLE} WHERE id = ANY(%s) RETURNING id", (targets,))
            deleted.update(r[0] for r in cur.fetchall())

    def transaction(self):
        """Runs one transaction; returns 'commit', 'rollback' or 'in_doubt'."""
        rng = self.rng
        conn = self._connect()
        inserted, deleted = [], set()
        committing = False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT txid_current()")
                xid = cur.fetchone()[0] % (1 << 32)
                for _ in range(rng.choice([1, 1, 2, 3])):
                    if rng.random() < 0.1:
                        # a rolled-back subtransaction: its changes never happened
                        cur.execute("SAVEPOINT s")
                        self._statement(cur, [], set())
                        cur.execute("ROLLBACK TO SAVEPOINT s")
                    else:
                        self._statement(cur, inserted, deleted)
            if rng.random() < 0.1:
                conn.rollback()
                self.rolled_back += 1
                return "rollback"
            committing = True
            t = time.monotonic()
            conn.commit()
        except _PG_DOWN:
            self._drop_connection()
            if committing:
                self.in_doubt += 1
                return "in_doubt"
            self.errors += 1
            return "rollback"
        self.commits.append((xid, t))
        self.committed += 1
        self.ids = [i for i in self.ids if i not in deleted] + inserted
        return "commit"

    def run(self, n):
        for _ in range(n):
            self.transaction()

    # -- background ----------------------------------------------------------------

    def start(self, pause=0.01):
        """Commits transactions in a thread until stop(); `pause` paces the load."""

        def loop():
            try:
                while not self._stop.is_set():
                    try:
                        self.transaction()
                    except _PG_DOWN:
                        # connecting failed: PostgreSQL is down; retry shortly
                        self._drop_connection()
                        self._stop.wait(0.1)
                        continue
                    self._stop.wait(pause)
            except BaseException as e:  # noqa: BLE001 - reported by stop()
                self.failure = e

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name="event-workload", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=60):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise AssertionError("the workload thread did not stop")
            self._thread = None
        if self.failure is not None:
            raise AssertionError(f"the workload failed: {self.failure!r}") from self.failure

    def wait_commits(self, n, timeout=60):
        """Waits until at least n more transactions committed than when called."""
        target = self.committed + n
        fixtures.wait_for(lambda: self.committed >= target or self.failure, timeout,
                          message=f"{n} more workload commits")
        if self.failure is not None:
            raise AssertionError(f"the workload failed: {self.failure!r}")

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self._drop_connection()

    def stats(self):
        return (f"{self.committed} committed, {self.rolled_back} rolled back,"
                f" {self.in_doubt} in doubt, {self.errors} cut off")


def big_insert(pg, pool, rows, grp=100, payload=16):
    """One transaction inserting `rows` rows; returns its xid."""
    ks = pool.take(rows)
    conn = pg.connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT txid_current()")
            xid = cur.fetchone()[0] % (1 << 32)
            cur.execute(f"INSERT INTO {EVENT_TABLE} (k, grp, payload)"
                        " SELECT unnest(%s::text[]), %s, repeat('b', %s)", (ks, grp, payload))
        conn.commit()
    finally:
        conn.close()
    return xid


def big_update(pg, pool, grp):
    """One transaction moving every row of group `grp` to a fresh k; returns (xid, rows)."""
    conn = pg.connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM {EVENT_TABLE} WHERE grp = %s ORDER BY id", (grp,))
            ids = [r[0] for r in cur.fetchall()]
            ks = pool.take(len(ids))
            cur.execute("SELECT txid_current()")
            xid = cur.fetchone()[0] % (1 << 32)
            cur.execute(
                f"UPDATE {EVENT_TABLE} e SET k = v.k"
                " FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::text[]) AS k) v"
                " WHERE e.id = v.id", (ids, ks))
        conn.commit()
    finally:
        conn.close()
    return xid, len(ids)


# ---------------------------------------------------------------------------------------
# commit positions, from a second slot


def commit_end_lsns(pg, slot, publication="walbust"):
    """{xid: end LSN of its commit record} for transactions pending on `slot` (peeked).

    A spare pgoutput slot created next to walbust's sees every transaction walbust sees;
    its Commit messages carry the exact end LSN walbust acknowledges.
    """
    out = {}
    xid = None
    for _lsn, _x, data in pg.peek_changes(slot, publication):
        kind = data[:1]
        if kind == b"B":
            xid = int.from_bytes(data[17:21], "big")
        elif kind == b"C" and xid is not None:
            out[xid] = Lsn(int.from_bytes(data[10:18], "big"))
            xid = None
    return out


# ---------------------------------------------------------------------------------------
# metrics


_METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(port, timeout=5):
    """[(name, {labels}, value)] from walbust's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for n, ls, v in samples
               if n == name and all(ls.get(k) == str(x) for k, x in labels.items()))


# ---------------------------------------------------------------------------------------
# the test case base


class FaultCase(unittest.TestCase):
    """Fresh PostgreSQL, Redis and fault schema per test; walbust on demand."""

    pg_settings = None
    wal_sender_timeout = "60s"
    redis_args = None  # e.g. AOF, so a Redis restart keeps the cache as production would
    redis_tls = False  # True: Redis accepts TLS only, with a client certificate

    def setUp(self):
        self.t0 = time.monotonic()
        self.pg = PostgresServer(settings=self.pg_settings,
                                 wal_sender_timeout=self.wal_sender_timeout)
        self.addCleanup(self.pg.close)
        self.certs = fixtures.TlsCertificates() if self.redis_tls else None
        if self.certs:
            self.addCleanup(self.certs.close)
        self.redis = RedisServer(extra_args=self.redis_args, tls=self.certs)
        self.addCleanup(self.redis.close)
        self.r = self.redis.client()
        self.addCleanup(self.r.close)
        self.schema()
        self.rules_dir = os.path.join(self.pg.tmp, "rules")
        os.makedirs(self.rules_dir, exist_ok=True)
        self.rules_path = os.path.join(self.rules_dir, "events.yaml")
        with open(self.rules_path, "w") as f:
            f.write(EVENT_RULES)
        self.walbust = None
        self._survivor_window = {}

    def schema(self):
        event_schema(self.pg)

    def tearDown(self):
        log(f"{self.id().split('.')[-1]}: {time.monotonic() - self.t0:.1f}s")

    def make_walbust(self, config=None, rules=None, pg=None, redis=None, metrics=True):
        """A Walbust driver (not started) with the event rules and a metrics port."""
        self.metrics_port = fixtures.free_port() if metrics else None
        cfg = {"metrics": {"listen": f"127.0.0.1:{self.metrics_port}" if metrics else ""}}
        cfg = fixtures.deep_merge(cfg, config or {})
        w = Walbust(pg or self.pg, redis or self.redis,
                    rules=rules if rules is not None else [self.rules_path], config=cfg)
        self.addCleanup(self._finish, w)
        self.walbust = w
        return w

    def start_walbust(self, config=None, wait=True, **kwargs):
        w = self.walbust or self.make_walbust(config, **kwargs)
        w.start()
        if wait:
            w.wait_streaming(timeout=30 * SLOW)
        return w

    def _finish(self, w):
        fixtures.finish_walbust(self, w, timeout=15 * SLOW)

    def metrics(self):
        return scrape(self.metrics_port)

    def sync_acknowledged(self, timeout=60):
        """Walbust.sync(), then waits until walbust acknowledged everything so far.

        The marker's key alone is not enough with delete_pattern rules: within one
        batch walbust sends plain deletes before pattern scans, so a later
        transaction's key can vanish before an earlier transaction's pattern is done.
        The acknowledgement comes only after both.
        """
        w = self.walbust
        w.sync(timeout=timeout * SLOW)
        end = fixtures.end_lsn_from_insert_lsn(self.pg.current_wal_insert_lsn())
        w.wait_confirmed(end, timeout=timeout * SLOW)

    def check_oracle(self, pool, since=0, what=""):
        """Asserts every key derived since audit seq `since` is gone and every pool key
        that no committed change derives survived; returns the number of derived keys.

        Survivors are checked for the values generated since the previous check only
        (a value can be used only by changes committed after it was generated), so
        repeated checks stay linear in the size of the run.
        """
        derived = derived_keys(self.pg, since)
        left = fixtures.existing_keys(self.r, derived)
        self.lost += len(left)
        if left:
            sample = sorted(left)[:20]
            self.fail(f"{what}: {len(left)} of {len(derived)} invalidations lost, e.g. {sample}\n"
                      f"{self.walbust.log_tail(80) if self.walbust else ''}")
        start, start_mark = self._survivor_window.get(id(pool), (0, 0))
        new_mark = audit_mark(self.pg)
        values = pool.generated[start:]
        fresh = {f"ev:{kind}:{v}" for v in values for kind in KEY_KINDS}
        must_survive = fresh - derived_keys(self.pg, start_mark)
        gone = must_survive - fixtures.existing_keys(self.r, must_survive)
        self.assertEqual(gone, set(), f"{what}: keys no committed change derives were deleted")
        self._survivor_window[id(pool)] = (start + len(values), new_mark)
        return len(derived)

    lost = 0
    _survivor_window = {}  # id(pool) -> (values checked, audit mark then)

    # -- "nothing is acknowledged while Redis is unreachable" --------------------------

    ORACLE_SLOT = "fault_oracle"

    def create_oracle_slot(self):
        """A spare slot that sees the same transactions and tells their commit end LSNs."""
        self.pg.create_slot(self.ORACLE_SLOT)

    def start_workload(self, pool, seed, oracle=True):
        """Starts the random event workload, after the oracle slot (when the test checks
        acknowledgements) and the audit mark: returns (mark, workload), closed at cleanup."""
        if oracle:
            self.create_oracle_slot()
        mark = audit_mark(self.pg)
        work = EventWorkload(self.pg, pool, seed=seed).start()
        self.addCleanup(work.close)
        return mark, work

    def advance_oracle_slot(self):
        """Consumes the spare slot's backlog, so peeking it stays cheap."""
        self.pg.execute("SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())",
                        (self.ORACLE_SLOT,))

    def assert_unacknowledged_since(self, t_cut, work, what):
        """No transaction whose COMMIT was sent after monotonic time t_cut (Redis cut off
        since then) is acknowledged: confirmed_flush_lsn stays below the end LSN of the
        first of them. Returns how many such transactions there were."""
        confirmed = self.pg.confirmed_flush_lsn()
        ends = commit_end_lsns(self.pg, self.ORACLE_SLOT)
        after = [ends[x] for x, t in list(work.commits) if t > t_cut and x in ends]
        self.assertTrue(after, f"{what}: no transaction committed while Redis was cut off")
        first = min(after)
        self.assertLess(confirmed, first,
                        f"{what}: confirmed_flush_lsn {confirmed} covers a transaction that"
                        f" committed (end {first}) while Redis was cut off\n"
                        f"{self.walbust.log_tail()}")
        return len(after)

    def json_log(self):
        """(records, stray): walbust's log under `log.format: json` as parsed objects, and
        every line that is not one (output that bypassed the logger)."""
        records, stray = [], []
        for line in self.walbust.log(whole=True).splitlines():
            if line.startswith("=== walbust run started"):
                continue  # written by the fixture between runs
            try:
                records.append(json.loads(line))
            except ValueError:
                stray.append(line)
        return records, stray

    def log_records(self, pattern, whole=True):
        """Records of walbust's text log matching the regex. A record is a line starting
        with a timestamp plus the lines that follow it without one (messages from libpq
        carry newlines)."""
        rx = re.compile(pattern)
        records = []
        for line in self.walbust.log(whole=whole).splitlines():
            if _RECORD_START.match(line) or not records:
                records.append(line)
            else:
                records[-1] += "\n" + line
        return [r for r in records if rx.search(r)]


# A text record starts with a timestamp; a JSON record is one line.
_RECORD_START = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} |=== walbust run|\{)")


def read_state(w):
    """walbust's state file (state_dir/walbust-SLOT.state) as a dict, or None."""
    path = os.path.join(w.state_dir, f"walbust-{w.slot}.state")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
