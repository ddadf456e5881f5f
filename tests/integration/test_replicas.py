"""Read replicas: deletes repeated once every replica replayed the commit (README, "Read
replicas"), against a real primary, physical hot standbys made by the fixtures
(pg_basebackup -R -X stream) and Redis.

The race: replay is paused on the standby, an UPDATE commits, walbust deletes the key,
a reader misses the cache, reads the standby (still the old row) and writes it back. The
repeated delete must remove that refill once the standby replayed the commit, and the
slot must not be acknowledged past the transaction before that.
"""

import json
import os
import sys
import time
import unittest
import urllib.request

import fixtures
from faultlib import metric, scrape
from fixtures import (
    PostgresServer,
    RedisServer,
    StandbyServer,
    Walbust,
    blog_rules_path,
    blog_schema,
    commit_and_get_end_lsn,
)

SLOW = 4 if fixtures.binary_is_sanitized() else 1
POLL = 0.01
GRACE = 0.2


def log(msg):
    print(f"[replicas] {msg}", file=sys.stderr, flush=True)


class ReplicaCase(unittest.TestCase):
    standbys = 1

    def setUp(self):
        self.t0 = time.monotonic()
        self.pg = PostgresServer()
        self.addCleanup(self.pg.close)
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        self.r = self.redis.client()
        self.addCleanup(self.r.close)
        blog_schema(self.pg)
        self.pg.execute("INSERT INTO blog_category (name, slug) VALUES ('c', 'c')")
        self.pg.execute("INSERT INTO blog_post (title, slug, author_id, category_id) VALUES ('old', 'p', 1, 1)")
        self.replicas = []
        for _ in range(self.standbys):
            s = StandbyServer(self.pg)
            self.addCleanup(s.close)
            self.replicas.append(s)
        for s in self.replicas:
            s.wait_replayed(self.pg.current_wal_lsn())

    def tearDown(self):
        log(f"{self.id().split('.')[-1]}: {time.monotonic() - self.t0:.1f}s")

    def make_walbust(self, dsns=None, max_wait="60s", grace=f"{int(GRACE * 1000)}ms"):
        self.metrics_port = fixtures.free_port()
        config = {
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
            "replicas": {
                "dsns": dsns if dsns is not None else [s.dsn for s in self.replicas],
                "poll_interval": f"{int(POLL * 1000)}ms",
                "grace": grace,
                "max_wait": max_wait,
            },
        }
        w = Walbust(self.pg, self.redis, rules=[blog_rules_path()], config=config)
        self.addCleanup(fixtures.finish_walbust, self, w, 15 * SLOW)
        return w

    def start(self, w):
        w.start()
        w.wait_streaming(timeout=30 * SLOW)
        w.sync()
        return w

    def metrics(self):
        return scrape(self.metrics_port)

    def update_post(self, title):
        conn = self.pg.connect(autocommit=False)
        try:
            with conn.cursor() as cur:
                cur.execute("UPDATE blog_post SET title = %s WHERE id = 1", (title,))
            return commit_and_get_end_lsn(conn)
        finally:
            conn.close()

    def update_and_see_first_delete(self, w):
        """Caches the post, updates it and waits for walbust's first delete. The key is set
        first so that the wait sees that delete, not a key that was never there (a late
        first delete would otherwise look like a premature repeat)."""
        self.r.set("post_detail_1", "old")
        end = self.update_post("new")
        w.wait_for(lambda: not self.r.exists("post_detail_1"), 10 * SLOW, message="first delete")
        return end

    def refill_from(self, standby):
        """A reader that missed the cache: reads the standby, writes what it read."""
        title = standby.query("SELECT title FROM blog_post WHERE id = 1")[0][0]
        self.r.set("post_detail_1", title)
        return title

    def confirmed(self, w):
        return self.pg.confirmed_flush_lsn(w.slot)


class TestReplayedRepeat(ReplicaCase):
    def test_a_stale_refill_from_a_paused_standby_is_deleted_once_it_replays(self):
        standby = self.replicas[0]
        w = self.start(self.make_walbust())
        standby.pause_replay()
        end = self.update_and_see_first_delete(w)
        self.assertEqual(self.refill_from(standby), "old")
        time.sleep(1.0)
        self.assertEqual(self.r.get("post_detail_1"), b"old", "repeated before the standby replayed")
        self.assertLess(self.confirmed(w), end, "acknowledged before the repeat")
        resumed = time.monotonic()
        standby.resume_replay()
        w.wait_for(lambda: not self.r.exists("post_detail_1"), 10 * SLOW, interval=0.005,
                   message="repeated delete after replay")
        took = time.monotonic() - resumed
        log(f"resume → repeated delete: {took * 1000:.0f} ms (grace {GRACE * 1000:.0f} ms)")
        self.assertGreaterEqual(took, GRACE * 0.9)
        self.assertLess(took, (GRACE + 20 * POLL + 0.5) * SLOW)
        w.wait_confirmed(end, timeout=10 * SLOW)
        # A reader now gets the new row; nothing repeats it away any more.
        self.assertEqual(self.refill_from(standby), "new")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=5) as resp:
            health = resp.read().decode()
        self.assertRegex(health, rf"replica 127\.0\.0\.1:{standby.port}: up, replayed \d+/[0-9A-F]+, lag ")
        m = self.metrics()
        self.assertGreaterEqual(metric(m, "walbust_replica_redeletes_total"), 1)
        self.assertGreaterEqual(metric(m, "walbust_replica_replay_lag_seconds_count"), 1)
        self.assertEqual(metric(m, "walbust_replica_timeouts_total"), 0)

    def test_a_standby_paused_longer_than_max_wait_is_repeated_anyway_and_counted(self):
        standby = self.replicas[0]
        w = self.start(self.make_walbust(max_wait="2s"))
        standby.pause_replay()
        end = self.update_and_see_first_delete(w)
        self.refill_from(standby)
        w.wait_for(lambda: not self.r.exists("post_detail_1"), 10 * SLOW, message="repeat after max_wait")
        w.wait_confirmed(end, timeout=10 * SLOW)
        m = self.metrics()
        self.assertGreaterEqual(metric(m, "walbust_replica_timeouts_total", replica=f"127.0.0.1:{standby.port}"), 1)
        w.wait_for_log(r"has not replayed")
        standby.resume_replay()

    def test_a_standby_stopped_and_restarted_holds_the_repeat_until_it_is_back(self):
        standby = self.replicas[0]
        w = self.start(self.make_walbust())
        standby.stop()
        end = self.update_and_see_first_delete(w)
        self.r.set("post_detail_1", "old")
        w.wait_for_log(r"replica .*reconnecting with backoff")
        time.sleep(1.0)
        self.assertTrue(self.r.exists("post_detail_1"), "repeated although the standby was down")
        self.assertLess(self.confirmed(w), end)
        standby.start()
        w.wait_for(lambda: not self.r.exists("post_detail_1"), 30 * SLOW, message="repeat after restart")
        w.wait_confirmed(end, timeout=10 * SLOW)
        w.wait_for_log(r"replica .*reachable again")

    def test_a_standby_unreachable_from_the_start_costs_max_wait_and_nothing_else(self):
        dead = f"host=127.0.0.1 port={fixtures.free_port()} dbname=walbust user=walbust connect_timeout=2"
        w = self.make_walbust(dsns=[self.replicas[0].dsn, dead], max_wait="2s")
        self.start(w)
        w.wait_for_log(r"unreachable at start")
        end = self.update_and_see_first_delete(w)
        self.r.set("post_detail_1", "old")
        w.wait_for(lambda: not self.r.exists("post_detail_1"), 10 * SLOW, message="repeat after max_wait")
        w.wait_confirmed(end, timeout=10 * SLOW)
        self.assertGreaterEqual(metric(self.metrics(), "walbust_replica_timeouts_total"), 1)

    def test_kill_9_while_repeats_wait_repeats_them_after_restart(self):
        standby = self.replicas[0]
        w = self.start(self.make_walbust())
        standby.pause_replay()
        end = self.update_and_see_first_delete(w)
        self.refill_from(standby)
        time.sleep(0.5)
        w.kill9()
        self.assertLess(self.confirmed(w), end)
        standby.resume_replay()
        standby.wait_replayed(end)
        self.r.set("post_detail_1", "old")  # a stale refill that happened meanwhile
        w.start()
        w.wait_for(lambda: not self.r.exists("post_detail_1"), 20 * SLOW, message="repeat after restart")
        w.wait_confirmed(end, timeout=10 * SLOW)

    def test_an_idle_system_does_not_poll_its_replicas(self):
        standby = self.replicas[0]
        with open(os.path.join(standby.datadir, "postgresql.conf"), "a") as f:
            f.write("log_statement = 'all'\n")
        standby._pg("pg_ctl", "-D", standby.datadir, "reload")
        w = self.start(self.make_walbust())

        def polls():
            return standby.log().count("pg_last_wal_replay_lsn()::text")

        self.update_post("new")
        w.wait_for(lambda: polls() >= 1, 10 * SLOW, message="a poll while the update waits")
        time.sleep(1.0)  # the repeat is done (grace 200 ms)
        before = polls()
        time.sleep(2.0)
        self.assertEqual(polls(), before, "replicas polled while nothing waited")
        self.assertGreaterEqual(before, 1)

    def test_a_primary_listed_as_a_replica_is_refused_at_start_and_by_check(self):
        w = self.make_walbust(dsns=[self.pg.dsn])
        w.start()
        self.assertEqual(w.wait(30 * SLOW), 2, w.log_tail())
        self.assertIn("not in recovery", w.log())
        out = w.run_cli(["check", "--db"])
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertRegex(out.stdout, r"FAIL .*replica 127\.0\.0\.1:\d+ .*not in recovery")

    def test_check_db_reports_a_standby_in_recovery_whose_position_is_readable(self):
        w = self.make_walbust()
        out = w.run_cli(["check", "--db"])
        self.assertIn(f"replica 127.0.0.1:{self.replicas[0].port}", out.stdout)
        self.assertRegex(out.stdout, r"ok +replica .*in recovery")
        self.assertNotIn("FAIL  replica", out.stdout)


class TestDryRun(ReplicaCase):
    def test_dry_run_marks_the_actions_repeated_after_replay(self):
        rules = os.path.join(self.pg.tmp, "replay-rules.yaml")
        with open(rules, "w") as f:
            f.write("""version: 1
rules:
  - name: pages
    table: blog_post
    delete: ["post_detail_{id}"]
    bump_version: ["post_version_{id}"]
  - name: counters
    table: blog_post
    after_replay: false
    delete: ["post_count"]
""")
        self.metrics_port = fixtures.free_port()
        w = Walbust(self.pg, self.redis, rules=[rules], marker=False,
                    config={"replicas": {"dsns": [self.replicas[0].dsn]}})
        self.addCleanup(w.close)
        self.pg.create_slot(w.slot)
        self.update_post("peeked")
        out = w.run_cli(["dry-run", "--peek", "--format", "json"], timeout=60 * SLOW)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        actions = {a["key"]: a for l in lines if l["type"] == "change" for a in l["actions"]}
        self.assertTrue(actions["post_detail_1"]["after_replay"])
        self.assertFalse(actions["post_version_1"]["after_replay"])
        self.assertFalse(actions["post_count"]["after_replay"])
        text = w.run_cli(["dry-run", "--peek"], timeout=60 * SLOW)
        self.assertIn("post_detail_1  [again after replay]", text.stdout)


class TestTwoReplicas(ReplicaCase):
    standbys = 2

    def test_the_repeat_waits_for_the_slower_of_two_standbys(self):
        fast, slow = self.replicas
        # One standby by host name: its lookup runs beside the stream thread's loop.
        by_name = fast.dsn.replace("host=127.0.0.1", "host=localhost")
        self.assertNotEqual(by_name, fast.dsn)
        w = self.start(self.make_walbust(dsns=[by_name, slow.dsn]))
        slow.pause_replay()
        end = self.update_and_see_first_delete(w)
        fast.wait_replayed(end)
        self.refill_from(slow)
        time.sleep(1.0)
        self.assertTrue(self.r.exists("post_detail_1"), "repeated before the slower standby replayed")
        slow.resume_replay()
        w.wait_for(lambda: not self.r.exists("post_detail_1"), 10 * SLOW, message="repeat")
        w.wait_confirmed(end, timeout=10 * SLOW)
        m = self.metrics()
        for host, s in (("localhost", fast), ("127.0.0.1", slow)):
            self.assertGreaterEqual(
                metric(m, "walbust_replica_replay_lag_seconds_count", replica=f"{host}:{s.port}"), 1)
        # Both replica connections are served by the stream thread's loop, like the Redis
        # target: replicas add no thread (README "How it works").
        self.assertEqual(sorted(fixtures.thread_names(w.pid)),
                         sorted(["walbust", "state writer", "catalog reader"] + ["metrics http"] * 3))


class TestMemory(ReplicaCase):
    def test_a_200k_row_transaction_with_a_lagging_standby_keeps_memory_bounded(self):
        standby = self.replicas[0]
        self.pg.execute("INSERT INTO blog_post (title, slug, author_id, category_id) "
                        "SELECT 't' || g, 's', g, 1 FROM generate_series(1, 200000) g")
        standby.wait_replayed(self.pg.current_wal_lsn(), timeout=120)
        w = self.make_walbust(max_wait="300s")
        w.start(env=fixtures.bounded_quarantine_env())
        w.wait_streaming(timeout=30 * SLOW)
        w.sync()
        w.start_rss_sampler()
        base = w.rss_kb()
        standby.pause_replay()
        conn = self.pg.connect(autocommit=False)
        with conn.cursor() as cur:
            cur.execute("UPDATE blog_post SET title = title || 'x' WHERE id > 1")
        end = commit_and_get_end_lsn(conn)
        conn.close()
        w.wait_for(lambda: metric(self.metrics(), "walbust_replica_overflows_total") >= 1, 120 * SLOW,
                   message="the transaction held as patterns")
        self.r.set("post_detail_5", "old")
        self.r.set("author_posts_5", "old")
        time.sleep(0.5)
        self.assertLess(self.confirmed(w), end)
        standby.resume_replay()
        w.wait_for(lambda: not self.r.exists("post_detail_5") and not self.r.exists("author_posts_5"),
                   60 * SLOW, message="repeat as patterns")
        w.wait_confirmed(end, timeout=60 * SLOW)
        log(f"rss: {base} kB at start, peak {w.peak_rss_kb} kB")
        self.assertLess(w.peak_rss_kb - base, 120 * 1024, "memory grew with the transaction")


if __name__ == "__main__":
    unittest.main()
