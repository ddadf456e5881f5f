"""Scale-out (docs/scale-out.md) against real servers: Redis Cluster routing, redirections, resharding
and failover; several targets with acknowledgement gated by the slowest; a standby
instance taking over the slot.

Every test fills the keys a transaction will invalidate *before* committing it, so a key
still present at the end is a missed delete: "no key left stale" is checked exactly.
"""

import os
import random
import sys
import tempfile
import threading
import time
import unittest


from cluster_fixtures import RedisCluster, key_slot
from fixtures import (
    DELETE,
    PostgresServer,
    RedisServer,
    SOURCE_DIR,
    Walbust,
    commit_and_get_end_lsn,
    NotifySocket,
    free_port,
    http_get,
    write_rules,
)

ITEM_RULES = """\
version: 1
rules:
  - name: items
    table: cached_item
    delete:
      - "item:{id}:v{ver}"
      - "{{g{grp}}}:item:{id}:v{ver}"
      - "grp:{grp}:list"
  - name: item-side
    table: cached_item
    targets: [side]
    delete:
      - "side:{id}:v{ver}"
"""

# Without a `side` target the second rule would not load: single-target configs use this.
ITEM_RULES_ONE_TARGET = ITEM_RULES[: ITEM_RULES.index("  - name: item-side")]


def item_keys(id_, grp, ver):
    return [f"item:{id_}:v{ver}", f"{{g{grp}}}:item:{id_}:v{ver}", f"grp:{grp}:list"]


def report(what, value):
    """Measured behaviour, printed for the test log."""
    print(f"\n[measured] {what}: {value}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# CRC16 / slot oracle, itself checked against CLUSTER KEYSLOT

def keyslot_table():
    path = os.path.join(SOURCE_DIR, "tests", "unit", "data", "cluster_keyslots.txt")
    out = []
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                hexkey, slot = line.split()
                out.append((b"" if hexkey == "-" else bytes.fromhex(hexkey), int(slot)))
    return out


# ---------------------------------------------------------------------------------------
# shared servers

PG = None


def setUpModule():
    global PG
    PG = PostgresServer()
    PG.execute("CREATE TABLE cached_item (id bigint PRIMARY KEY, grp int NOT NULL, ver int NOT NULL)")
    PG.execute("ALTER TABLE cached_item REPLICA IDENTITY FULL")
    PG.execute("CREATE TABLE walbust_marker (id serial PRIMARY KEY, note text)")
    PG.execute("CREATE PUBLICATION walbust FOR TABLE cached_item, walbust_marker")


def tearDownModule():
    if PG is not None:
        PG.close()


class ClusterRedis:
    """What the Walbust driver needs from a Redis (url, client) for a cluster target."""

    def __init__(self, cluster):
        self.cluster = cluster

    @property
    def url(self):
        return "redis://127.0.0.1:6379/0"  # credentials only: the nodes come from `nodes:`

    def client(self, **kwargs):
        return self.cluster.client(**kwargs)


class Load:
    """Updates random rows of [first, first+rows) in small transactions from a thread.
    Before each commit it fills the keys the commit will invalidate (new version); every
    key it filled is remembered, so the test can check none survived."""

    def __init__(self, pg, fill, first, rows, grp_count=64, per_txn=20, seed=1):
        self.pg = pg
        self.fill = fill  # fill(keys): SET each key, retrying through topology changes
        self.ids = list(range(first, first + rows))
        self.grp_count = grp_count
        self.per_txn = per_txn
        self.rng = random.Random(seed)
        self.ver = {}
        self.filled = set()
        self.commits = 0
        self.stop_flag = threading.Event()
        self.error = None
        self.thread = None

    def insert_all(self):
        keys = []
        for i in self.ids:
            keys += item_keys(i, i % self.grp_count, 0)
        self.fill(keys)
        self.filled.update(keys)
        with self.pg.connect() as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO cached_item (id, grp, ver) VALUES (%s, %s, 0)",
                            [(i, i % self.grp_count) for i in self.ids])
        for i in self.ids:
            self.ver[i] = 0

    def prepare(self, rounds):
        """Plans `rounds` transactions on distinct rows and fills their keys now; commit
        them later with commit_prepared() (e.g. while a Redis node is down)."""
        chosen = self.rng.sample(self.ids, self.per_txn * rounds)
        plan = [chosen[r * self.per_txn:(r + 1) * self.per_txn] for r in range(rounds)]
        keys = []
        for i in chosen:
            keys += item_keys(i, i % self.grp_count, self.ver[i] + 1)
        self.fill(keys)
        self.filled.update(keys)
        return plan

    def commit_prepared(self, plan):
        with self.pg.connect(autocommit=False) as conn:
            for chosen in plan:
                self._commit(conn, chosen)

    def _commit(self, conn, chosen):
        with conn.cursor() as cur:
            cur.execute("UPDATE cached_item SET ver = ver + 1 WHERE id = ANY(%s)", (chosen,))
        conn.commit()
        for i in chosen:
            self.ver[i] += 1
        self.commits += 1

    def one_round(self, conn):
        chosen = self.rng.sample(self.ids, self.per_txn)
        keys = []
        for i in chosen:
            keys += item_keys(i, i % self.grp_count, self.ver[i] + 1)
        self.fill(keys)
        self.filled.update(keys)
        self._commit(conn, chosen)

    def _run(self):
        conn = self.pg.connect(autocommit=False)
        try:
            while not self.stop_flag.is_set():
                self.one_round(conn)
                time.sleep(0.01)
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.error = e
        finally:
            conn.close()

    def adopt(self, other):
        """Continues another load's rows, versions and filled keys."""
        self.ver, self.filled, self.commits = other.ver, other.filled, other.commits
        return self

    def start(self):
        self.stop_flag.clear()
        self.thread = threading.Thread(target=self._run, name="load", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stop_flag.set()
        self.thread.join(60)
        if self.error is not None:
            raise AssertionError(f"load failed: {self.error!r}")


# ---------------------------------------------------------------------------------------
# Redis Cluster

class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = RedisCluster(masters=3, replicas=1, node_timeout_ms=1000)
        cls.tmp = tempfile.mkdtemp(prefix="walbust-scale-")
        cls.rules = write_rules(cls.tmp, ITEM_RULES_ONE_TARGET, "items.yaml")

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def setUp(self):
        self.w = None

    def tearDown(self):
        if self.w is not None:
            self.w.close()

    def start_walbust(self, slot):
        target = {"url": "redis://127.0.0.1:6379/0", "cluster": True, "nodes": self.cluster.seeds,
                  "timeout": "1s"}
        self.w = Walbust(PG, ClusterRedis(self.cluster), rules=[self.rules], slot=slot,
                         config={"redis": DELETE, "targets": {"cache": target},
                                 "log": {"level": "debug"}})
        self.w.start()
        self.w.wait_streaming()
        return self.w

    # fill and check, per master (fast, for a stable topology) or through redis-py's
    # cluster client (follows MOVED/ASK and retries during failovers)

    def fill_by_node(self, keys):
        by_port = {}
        for k in keys:
            by_port.setdefault(self.cluster.master_of_slot_cached(key_slot(k)), []).append(k)
        for port, ks in by_port.items():
            pipe = self.cluster.node(port).client().pipeline(transaction=False)
            for k in ks:
                pipe.set(k, "cached")
            pipe.execute()

    def fill_resilient(self, keys):
        self.cluster.set_keys(keys)

    def left(self, keys):
        """The keys that still exist (EXISTS on each slot's master)."""
        return self.cluster.existing(keys)

    def test_slot_oracle_matches_cluster_keyslot(self):
        # The table the C++ unit test checks key_hash_slot() against, verified on a live
        # cluster, and this file's own oracle with it.
        node = self.cluster.live_nodes()[0].client()
        table = keyslot_table()
        self.assertGreater(len(table), 300)
        for key, slot in table:
            self.assertEqual(int(node.execute_command("CLUSTER", "KEYSLOT", key)), slot, key)
            self.assertEqual(key_slot(key), slot, key)

    def test_keys_in_every_slot_deleted_then_truncate_patterns(self):
        self.cluster.forget_slot_cache()
        # One row per slot: item:{id}:v0 covers all 16384 slots.
        ids, covered, i = [], set(), 1_000_000
        while len(covered) < 16384:
            s = key_slot(f"item:{i}:v0")
            if s not in covered:
                covered.add(s)
                ids.append(i)
            i += 1
        keys = []
        for i in ids:
            keys += item_keys(i, i % 64, 0)
        keys = sorted(set(keys))
        self.fill_by_node(keys)
        masters = self.cluster.master_ports()
        per_master = {p: self.cluster.node(p).client().dbsize() for p in masters}
        self.assertTrue(all(n > 5000 for n in per_master.values()), per_master)

        w = self.start_walbust("cluster_slots")
        started = time.monotonic()
        with PG.connect(autocommit=False) as conn, conn.cursor() as cur:
            for chunk in range(0, len(ids), 4096):
                cur.executemany("INSERT INTO cached_item (id, grp, ver) VALUES (%s, %s, 0)",
                                [(i, i % 64) for i in ids[chunk:chunk + 4096]])
                conn.commit()
        w.sync()
        report("cluster: keys in all 16384 slots deleted", f"{len(keys)} keys in {time.monotonic() - started:.2f}s")
        self.assertEqual(self.left(keys), set())

        # TRUNCATE: every template becomes a pattern, scanned on every master.
        sample = []
        for i in ids[:3000]:
            sample += item_keys(i, i % 64, 7)
        sample = sorted(set(sample))
        bystander = [f"other:{n}" for n in range(300)]
        self.fill_by_node(sample + bystander)
        PG.execute("TRUNCATE cached_item")
        w.sync()
        self.assertEqual(self.left(sample), set())
        self.assertEqual(self.left(bystander), set(bystander), "a pattern deleted a key it does not match")
        self.assertNotIn("retrying with backoff", w.log(), "errors on a stable cluster")

    def test_moved_and_ask_are_followed(self):
        self.cluster.forget_slot_cache()
        w = self.start_walbust("cluster_redirect")
        grp = 7
        slot = key_slot(f"{{g{grp}}}")
        src = self.cluster.master_of_slot(slot)
        dst = next(p for p in self.cluster.master_ports() if p != src)
        a, b = self.cluster.node(src), self.cluster.node(dst)
        # One row whose update renders two keys of one slot: version 0 (old row) and 1.
        PG.execute("INSERT INTO cached_item (id, grp, ver) VALUES (2000001, 7, 0)")
        w.sync()
        k1, k2 = f"{{g{grp}}}:item:2000001:v0", f"{{g{grp}}}:item:2000001:v1"
        k3 = f"{{g{grp}}}:item:2000003:v0"
        for k in (k1, k2):
            a.client().set(k, "cached")
        # Slot `slot` migrates from a to b; k2 already moved, k1 not yet.
        b.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", a.node_id())
        a.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", b.node_id())
        a.client().execute_command("MIGRATE", "127.0.0.1", dst, k2, 0, 5000)
        try:
            self.assertEqual(int(a.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)), 1)
            # UNLINK k1 k2 gets TRYAGAIN (keys split between the nodes); one key per command
            # then: k1 is deleted on a, k2 after ASK, with ASKING, on b.
            PG.execute("UPDATE cached_item SET ver = 1 WHERE id = 2000001")
            w.sync()
            self.assertEqual(int(a.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)), 0,
                             "k1 (still on the migrating node) was not deleted")
            self.assertEqual(int(b.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)), 0,
                             "k2 (moved to the importing node) was not deleted")

            # The migration ends: b owns the slot, walbust's map still says a -> MOVED.
            for port in self.cluster.master_ports():
                self.cluster.node(port).client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", b.node_id())
            self.cluster.wait_ok()
            b.client().set(k3, "cached")
            PG.execute("INSERT INTO cached_item (id, grp, ver) VALUES (2000003, 7, 0)")
            w.sync()
            self.assertEqual(b.client().exists(k3), 0, "k3 was not deleted after MOVED")
        finally:
            # Give the slot back (empty), so other tests start from the usual layout.
            for port in self.cluster.master_ports():
                self.cluster.node(port).client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", a.node_id())
            self.cluster.wait_ok()
        self.assertNotIn("retrying with backoff", w.log(), "redirections must be followed, not retried")
        log = w.log()
        self.assertRegex(log, r"0 MOVED, 0 ASK, 1 TRYAGAIN; resending 2 keys")
        self.assertRegex(log, r"0 MOVED, 1 ASK, 0 TRYAGAIN; resending 1 keys")
        self.assertRegex(log, r"1 MOVED, 0 ASK, 0 TRYAGAIN; resending 1 keys")

    def test_acl_user_with_the_documented_permissions(self):
        # docs/scale-out.md: the ACL a cluster target needs, set on every node; AUTH with
        # the url's user and the password file on every node connection.
        acl = ["on", ">s3cret pw", "~*", "-@all", "+unlink", "+del", "+ping", "+cluster|slots", "+asking",
               "+scan", "+cluster|nodes"]
        for n in self.cluster.live_nodes():
            n.client().execute_command("ACL", "SETUSER", "walbust", *acl)
        password_file = os.path.join(self.tmp, "redis-password")
        with open(password_file, "w") as f:
            f.write("s3cret pw\n")
        os.chmod(password_file, 0o600)
        target = {"url": "redis://walbust@127.0.0.1:6379", "password_file": password_file, "cluster": True,
                  "nodes": self.cluster.seeds[:1]}
        self.w = w = Walbust(PG, ClusterRedis(self.cluster), rules=[self.rules], slot="cluster_acl",
                             config={"redis": DELETE, "targets": {"cache": target}})
        w.start()
        w.wait_streaming()
        ids = list(range(7_000_000, 7_000_300))
        keys = [k for i in ids for k in item_keys(i, i % 64, 0)]
        self.cluster.set_keys(keys)
        with PG.connect() as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO cached_item (id, grp, ver) VALUES (%s, %s, 0)", [(i, i % 64) for i in ids])
        w.sync()
        self.assertEqual(self.left(keys), set())
        # Patterns need +scan and +cluster|nodes.
        again = [k for i in ids for k in item_keys(i, i % 64, 3)]
        self.cluster.set_keys(again)
        PG.execute("DELETE FROM cached_item WHERE id >= 7000000 AND id < 7000300")
        PG.execute("TRUNCATE cached_item")
        w.sync()
        self.assertEqual(self.left(again), set())
        self.assertNotIn("retrying with backoff", w.log())
        self.assertNotIn("s3cret", w.log())

    def test_reshard_under_load_leaves_nothing_stale(self):
        w = self.start_walbust("cluster_reshard")
        load = Load(PG, self.fill_resilient, first=3_000_000, rows=2000, seed=3)
        load.insert_all()
        masters = self.cluster.master_ports()
        before = self.cluster.slot_counts()
        load.start()
        time.sleep(0.5)
        started = time.monotonic()
        commits_before = load.commits
        self.cluster.reshard(masters[0], masters[1], 3000)
        reshard_seconds = time.monotonic() - started
        during = load.commits - commits_before
        time.sleep(0.5)
        load.stop()
        after = self.cluster.slot_counts()
        self.assertEqual(after[masters[0]], before[masters[0]] - 3000)
        self.assertGreater(during, 5, "the load did not overlap the reshard")
        t = time.monotonic()
        w.sync(timeout=60)
        log = w.log()
        report("cluster: reshard of 3000 slots under load",
               f"{reshard_seconds:.1f}s, {during} transactions during it, caught up {time.monotonic() - t:.2f}s after; "
               f"redirected rounds: {log.count('; resending')}, backoff retries: {log.count('retrying with backoff')}")
        self.assertIn("; resending", log, "the reshard never redirected walbust: the test did not test it")
        self.assertEqual(self.left(load.filled), set())
        # Back to an even layout for the other tests.
        self.cluster.reshard(masters[1], masters[0], 3000)

    def test_master_killed_replica_promoted_nothing_stale(self):
        w = self.start_walbust("cluster_failover")
        load = Load(PG, self.fill_resilient, first=4_000_000, rows=2000, seed=4)
        load.insert_all()
        load.start()
        time.sleep(1.0)
        load.stop()
        # Transactions committed while the master is dead: their keys are filled (and
        # replicated) first, so the promoted replica holds them and walbust must delete
        # them there once the cluster serves the slots again.
        plan = load.prepare(40)
        self.cluster.wait_replicated()
        w.sync()
        victim = self.cluster.master_ports()[0]
        replica = self.cluster.replica_of(victim)
        self.cluster.node(victim).kill9()
        killed_at = time.monotonic()
        load.commit_prepared(plan)
        end_lsn = PG.current_wal_lsn()
        time.sleep(0.5)  # the cluster needs cluster-node-timeout (1 s) and an election
        self.assertLess(PG.confirmed_flush_lsn("cluster_failover"), end_lsn,
                        "acknowledged while the keys' master was dead")
        new_master, failover_seconds = self.cluster.wait_failover(victim, replica, killed_at)
        self.cluster.forget_slot_cache()
        w.wait_confirmed(end_lsn, timeout=60)
        acknowledged = time.monotonic() - killed_at
        load = Load(PG, self.fill_resilient, first=4_000_000, rows=2000, seed=5).adopt(load)
        load.start()
        time.sleep(1.0)
        load.stop()
        w.sync(timeout=60)
        log = w.log()
        report("cluster: master killed -9, replica promoted",
               f"cluster ok {failover_seconds:.1f}s after the kill; the 40 transactions committed meanwhile "
               f"acknowledged {acknowledged:.1f}s after the kill; "
               + "; ".join(line.split(": ", 1)[-1][-60:] for line in log.splitlines() if "reachable again" in line))
        self.assertEqual(self.left(load.filled), set())
        self.assertIn("retrying with backoff", log)
        # The old master comes back as a replica of the promoted one.
        self.cluster.restart_node(victim)
        self.cluster.wait_replicas_synced()
        self.assertEqual(self.cluster.node(victim).role(), "slave")


# ---------------------------------------------------------------------------------------
# several targets

class TargetsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="walbust-targets-")
        self.a = RedisServer()
        self.b = RedisServer()
        self.w = None

    def tearDown(self):
        if self.w is not None:
            self.w.close()
        for r in (self.a, self.b):
            if r.proc is not None and r.proc.poll() is None:
                os.kill(r.proc.pid, 18)  # SIGCONT, in case a test failed while it was stopped
            r.close()

    def test_slowest_target_gates_acknowledgement(self):
        rules = write_rules(self.tmp, ITEM_RULES.replace("targets: [side]", "targets: [b]"), "items.yaml")
        port = free_port()
        self.w = w = Walbust(PG, self.a, rules=[rules], slot="targets", config={
            "redis": DELETE,
            "targets": {"a": {"url": self.a.url, "timeout": "1s"}, "b": {"url": self.b.url, "timeout": "1s"}},
            "metrics": {"listen": f"127.0.0.1:{port}"},
        })
        w.start()
        w.wait_streaming()
        status, body = w.wait_for(lambda: (lambda r: r if r[0] == 200 else None)(http_get(port, "/healthz")),
                                  message="healthz 200")
        self.assertIn("target a (127.0.0.1:", body)
        self.assertIn("target b (127.0.0.1:", body)
        self.assertEqual(body.count(": up,"), 2, body)
        _, metrics = http_get(port, "/metrics")
        self.assertIn('target="a"', metrics)
        self.assertIn('target="b"', metrics)

        ca, cb = self.a.client(), self.b.client()
        shared = item_keys(5_000_001, 1, 0)
        only_b = ["side:5000001:v0"]
        for c in (ca, cb):
            for k in shared + only_b:
                c.set(k, "cached")
        w.sync()
        before = PG.confirmed_flush_lsn("targets")

        os.kill(self.b.proc.pid, 19)  # SIGSTOP: b accepts connections but never answers
        paused_at = time.monotonic()
        conn = PG.connect(autocommit=False)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO cached_item (id, grp, ver) VALUES (5000001, 1, 0)")
        end_lsn = commit_and_get_end_lsn(conn)
        conn.close()
        w.wait_for(lambda: not any(ca.exists(k) for k in shared), message="target a deleted its keys")
        self.assertEqual(ca.exists(*only_b), 1, "a rule for target b only reached target a")
        # b is stopped: the slot must not move past the transaction for 4 s.
        code, body = w.wait_for(lambda: (lambda r: r if r[0] == 503 else None)(http_get(port, "/healthz")),
                                timeout=10, message="healthz 503 while b is stopped")
        self.assertIn("redis target b unreachable", body)
        self.assertIn("target a (", body)
        while time.monotonic() - paused_at < 4.0:
            self.assertLess(PG.confirmed_flush_lsn("targets"), end_lsn,
                            "acknowledged although target b never confirmed")
            time.sleep(0.2)
        self.assertGreaterEqual(PG.confirmed_flush_lsn("targets"), before)

        os.kill(self.b.proc.pid, 18)  # SIGCONT
        resumed_at = time.monotonic()
        w.wait_confirmed(end_lsn, timeout=30)
        report("targets: acknowledgement stalled while target b was stopped",
               f"{resumed_at - paused_at:.1f}s stopped; acknowledged {time.monotonic() - resumed_at:.2f}s after "
               f"SIGCONT")
        self.assertEqual([k for k in shared + only_b if cb.exists(k)], [])
        w.wait_for(lambda: http_get(port, "/healthz")[0] == 200, timeout=15, message="healthz back to 200")


# ---------------------------------------------------------------------------------------
# standby

class StandbyTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="walbust-standby-")
        self.redis = RedisServer()
        self.instances = []
        self.notify = NotifySocket(self.tmp)

    def tearDown(self):
        for w in self.instances:
            w.close()
        self.notify.close()
        self.redis.close()

    def instance(self, name):
        rules = write_rules(self.tmp, ITEM_RULES_ONE_TARGET, "items.yaml")
        port = free_port()
        w = Walbust(PG, self.redis, rules=[rules], slot="standby", status_interval="1s",
                    workdir=os.path.join(self.tmp, name),
                    config={"metrics": {"listen": f"127.0.0.1:{port}"}})
        w.metrics_port = port
        self.instances.append(w)
        return w

    def test_standby_takes_over_after_kill9_without_losing_changes(self):
        active = self.instance("active")
        standby = self.instance("standby")
        active.start()
        active.wait_streaming()
        standby.start(env={"NOTIFY_SOCKET": self.notify.path})
        code, body = standby.wait_for(
            lambda: (lambda r: r if r[0] == 503 and "standby" in r[1] else None)(http_get(standby.metrics_port, "/healthz")),
            message="standby in /healthz")
        self.assertIn("standby: slot standby is held by another consumer", body)
        standby.wait_for(lambda: any(m.startswith("standby") for m in self.notify.statuses()),
                         message="STATUS=standby")
        # STATUS=standby can come first: READY also waits for the Redis target to answer.
        standby.wait_for(lambda: "READY" in self.notify.kinds(), timeout=15,
                         message="READY=1: a standby is a started service")
        self.assertEqual(http_get(active.metrics_port, "/healthz")[0], 200)

        client = self.redis.client()
        load = Load(PG, lambda keys: client.mset({k: "cached" for k in keys}), first=6_000_000, rows=500, seed=6)
        load.insert_all()
        load.start()
        time.sleep(1.0)
        active.kill9()
        killed_at = time.monotonic()
        standby.wait_for(lambda: http_get(standby.metrics_port, "/healthz")[0] == 200, timeout=15,
                         message="standby streaming after the active instance died")
        takeover = time.monotonic() - killed_at
        time.sleep(0.5)
        load.stop()
        standby.sync(timeout=60)
        report("standby: takeover after kill -9 of the active instance",
               f"{takeover:.2f}s (status_interval 1s); {load.commits} transactions, none lost")
        self.assertLess(takeover, 1.0 + 2.0)
        self.assertEqual({k for k in load.filled if client.exists(k)}, set())
        self.assertTrue(any(m.startswith("streaming") for m in self.notify.statuses()) or
                        "streaming from slot standby" in standby.log())


if __name__ == "__main__":
    unittest.main()
