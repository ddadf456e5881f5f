"""`walbust dry-run` against real PostgreSQL and Redis (README "Try your rules safely").

Both modes (a temporary slot following new changes, and --peek on the configured slot's
backlog), both formats, --check-redis, and the two promises: dry-run never writes to Redis
(every command it sends is recorded with MONITOR) and never moves the production slot
(its confirmed_flush_lsn and pending transactions are unchanged).
"""

import json
import os
import re
import subprocess
import tempfile
import time
import unittest

import fixtures
from fixtures import PostgresServer, RedisServer, Walbust
from tcp_proxy import TcpProxy

TIMEOUT = 30
SLOW = 4 if fixtures.binary_is_sanitized() else 1


Monitor = fixtures.RedisMonitor


class DryRunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer()
        cls.redis = RedisServer()
        fixtures.blog_schema(cls.pg, marker=False)
        cls.pg.execute("INSERT INTO blog_category (name, slug) VALUES ('a', 'a'), ('b', 'b'), ('c', 'c')")
        cls.pg.execute("INSERT INTO blog_post (title, slug, author_id, category_id) VALUES"
                       " ('one', 'one', 1, 1), ('two', 'two', 2, 2), ('three', 'three', 3, 3)")
        cls.tmp = tempfile.mkdtemp(prefix="walbust-dry-run-test-")
        cls.rules = fixtures.blog_rules_path()
        # The production slot exists and has a backlog: dry-run must leave both alone.
        cls.w = Walbust(cls.pg, cls.redis, rules=[cls.rules], marker=False)
        cls.pg.create_slot("walbust")

    @classmethod
    def tearDownClass(cls):
        cls.w.close()
        cls.redis.close()
        cls.pg.close()

    def slot_state(self):
        info = self.pg.slot_info("walbust")
        return info["confirmed_flush_lsn"], tuple(self.pg.pending_xids())

    def start_follow(self, *args):
        proc = self.w.popen_cli(["dry-run", *args])
        banner = proc.stderr.readline()
        self.assertIn("following changes committed from", banner)
        self.assertIn("temporary slot walbust_dry_run_", banner)
        return proc

    def move_post_and_comment(self):
        """One transaction of two statements, then a rolled-back one."""
        conn = self.pg.connect(autocommit=False)
        with conn.cursor() as cur:
            cur.execute("UPDATE blog_post SET category_id = 2 WHERE id = 1")
            cur.execute("INSERT INTO blog_comment (post_id, author_name, body) "
                        "VALUES (1, 'zoë', E'two\\nlines \"quoted\" *glob*')")
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("DELETE FROM blog_post WHERE id = 3")
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("UPDATE blog_post SET category_id = 1 WHERE id = 1")
        conn.commit()
        conn.close()

    def test_follow_json_fields_and_nothing_written(self):
        before = self.slot_state()
        self.redis.client().set("post_detail_1", "cached")
        monitor = Monitor(self.redis)
        try:
            proc = self.start_follow("--format", "json", "--check-redis", "--max-changes", "3")
            self.move_post_and_comment()
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            monitor.stop(self.redis)
        self.assertEqual(proc.returncode, 0, err)
        lines = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([l["type"] for l in lines], ["change", "change", "change", "summary"])
        move, comment, back, summary = lines
        self.assertEqual(list(move.keys()),
                         ["type", "lsn", "xid", "table", "op", "changed", "old", "new", "actions"])
        self.assertRegex(move["lsn"], r"^[0-9A-F]+/[0-9A-F]+$")
        self.assertIsInstance(move["xid"], int)
        self.assertEqual(move["xid"], comment["xid"])  # one transaction
        self.assertNotEqual(move["xid"], back["xid"])
        self.assertEqual(move["table"], "public.blog_post")
        self.assertEqual(move["op"], "update")
        self.assertEqual(move["changed"], ["category_id"])
        self.assertEqual(move["old"]["category_id"], "1")
        self.assertEqual(move["new"]["category_id"], "2")
        self.assertEqual(move["new"]["is_featured"], "f")
        keys = {(a["action"], a["key"]): a for a in move["actions"]}
        self.assertEqual(set(keys), {("delete", k) for k in (
            "post_detail_1", "home_page_posts", "category_posts_1", "category_posts_2", "author_posts_1")})
        for a in move["actions"]:
            self.assertEqual(a["rule"], "post-pages")
            self.assertEqual(a["exists"], a["key"] == "post_detail_1")
        self.assertEqual(comment["table"], "public.blog_comment")
        self.assertEqual(comment["op"], "insert")
        self.assertIsNone(comment["changed"])
        self.assertIsNone(comment["old"])
        self.assertEqual(comment["new"]["body"], 'two\nlines "quoted" *glob*')
        self.assertEqual(comment["new"]["author_name"], "zoë")
        self.assertEqual([a["key"] for a in comment["actions"]], ["post_detail_1"])
        # The rolled-back DELETE never reached logical decoding.
        self.assertNotIn("delete", [l.get("op") for l in lines])
        self.assertEqual(summary, {"type": "summary", "changes": 3, "matched": 3, "keys": 11, "existing": 3})
        # Read-only towards Redis, and the production slot did not move.
        self.assertTrue(monitor.commands, "MONITOR recorded nothing")
        self.assertLessEqual(set(monitor.commands), {"EXISTS", "SCAN", "PING", "SELECT", "AUTH", "HELLO"},
                             monitor.commands)
        self.assertEqual(self.redis.client().get("post_detail_1"), b"cached")
        self.assertEqual(self.slot_state()[0], before[0])
        # The temporary slot is gone with the session.
        rows = self.pg.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'walbust_dry_run_%'")
        self.assertEqual(rows, [])

    def test_follow_text_stops_after_duration(self):
        proc = self.start_follow("--duration", "3")
        self.move_post_and_comment()
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=TIMEOUT)
        self.assertEqual(proc.returncode, 0, err)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertRegex(out, r"\d+/[0-9A-F]+  xid \d+  public\.blog_post  update  changed: category_id\n"
                              r"    post-pages  delete  post_detail_1\n")
        self.assertIn("public.blog_comment  insert\n    comment-post-page  delete  post_detail_1\n", out)
        self.assertIn("category_posts_1", out)
        self.assertIn("category_posts_2", out)
        self.assertNotIn("  delete\n", out.replace("  delete  ", ""))  # no DELETE change shown
        self.assertTrue(out.rstrip().endswith("3 changes, 3 matched a rule, 11 keys"), out)

    def test_peek_reads_backlog_without_consuming(self):
        self.pg.execute("UPDATE blog_post SET title = 'two!' WHERE id = 2")
        before = self.slot_state()
        self.assertTrue(before[1], "expected a backlog on the production slot")
        r = fixtures.run_walbust(["dry-run", "-c", self.w.config_path, "--peek", "--format", "json"],
                                 timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual(lines[-1]["type"], "summary")
        changes = [l for l in lines if l["type"] == "change"]
        self.assertTrue(any(c["new"] and c["new"].get("title") == "two!" for c in changes))
        self.assertEqual(lines[-1]["changes"], len(changes))
        self.assertEqual(self.slot_state(), before)  # nothing consumed
        text = fixtures.run_walbust(["dry-run", "-c", self.w.config_path, "--peek", "--max-changes", "1"],
                                    timeout=TIMEOUT)
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertTrue(text.stdout.rstrip().endswith("1 changes, 1 matched a rule, 5 keys")
                        or "1 changes" in text.stdout, text.stdout)

    def test_closed_pipe_ends_quietly(self):
        self.pg.execute("UPDATE blog_post SET title = 'again' WHERE id = 2")
        r = subprocess.run(
            f"'{fixtures.walbust_binary()}' dry-run -c '{self.w.config_path}' --peek --format json | head -n 1",
            shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT,
            env=fixtures.walbust_env(), executable="/bin/bash")
        self.assertEqual(len(r.stdout.splitlines()), 1)
        self.assertEqual(json.loads(r.stdout)["type"], "change")
        self.assertNotIn("terminate", r.stderr)
        self.assertNotIn("Broken pipe", r.stderr)

    def test_peek_refuses_a_slot_in_use(self):
        self.w.start()
        try:
            self.w.wait_streaming(timeout=TIMEOUT)
            r = fixtures.run_walbust(["dry-run", "-c", self.w.config_path, "--peek"], timeout=TIMEOUT)
            self.assertEqual(r.returncode, 1)
            self.assertIn("replication slot walbust is in use by process", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        finally:
            self.assertEqual(self.w.stop(), 0)

    def config_with(self, **postgres):
        path = os.path.join(self.tmp, "other.yaml")
        cfg = fixtures.deep_merge(self.w.config, {"postgres": postgres})
        with open(path, "w") as f:
            f.write(fixtures.to_yaml(cfg))
        return path

    def test_missing_publication(self):
        r = fixtures.run_walbust(["dry-run", "-c", self.config_with(publication="nope")], timeout=TIMEOUT)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(),
                         "walbust dry-run: publication nope does not exist (walbust setup prints the SQL)")

    def test_role_without_replication(self):
        self.pg.execute("DROP ROLE IF EXISTS plain; CREATE ROLE plain LOGIN", user="postgres")
        dsn = self.pg.conninfo(user="plain")
        r = fixtures.run_walbust(["dry-run", "-c", self.config_with(dsn=dsn)], timeout=TIMEOUT)
        self.assertEqual(r.returncode, 1)
        self.assertIn("may not use replication", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_rules_with_errors(self):
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("version: 1\nrules:\n  - name: x\n    tabel: blog_post\n    delete: [\"k_{id\"]\n")
        path = os.path.join(self.tmp, "bad-config.yaml")
        with open(path, "w") as f:
            f.write(fixtures.to_yaml(fixtures.deep_merge(self.w.config, {"rules": [bad]})))
        r = fixtures.run_walbust(["dry-run", "-c", path], timeout=TIMEOUT)
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, re.escape(bad) + r":4:5: error: ")
        self.assertRegex(r.stderr, re.escape(bad) + r":5:\d+: error: ")

    def test_follow_mode_gives_up_on_a_server_that_went_silent(self):
        # The replication connection is stranded (a NAT or firewall dropped it without a
        # word): like run, dry-run asks for a reply and gives up after the receive timeout.
        with TcpProxy(self.pg.port) as proxy:
            dsn = self.pg.conninfo().replace(f"port={self.pg.port}", f"port={proxy.port}")
            proc = subprocess.Popen([fixtures.walbust_binary(), "dry-run", "-c", self.config_with(dsn=dsn)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=fixtures.walbust_env())
            try:
                self.assertIn("following changes committed from", proc.stderr.readline())
                stranded_at = time.monotonic()
                self.assertGreaterEqual(proxy.strand(), 1)
                _, err = proc.communicate(timeout=60 * SLOW)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        took = time.monotonic() - stranded_at
        self.assertEqual(proc.returncode, 1, err)
        self.assertRegex(err, r"no data from the server for 3\d s although a reply was requested")
        self.assertGreaterEqual(took, 29)

    def test_check_redis_needs_redis(self):
        path = os.path.join(self.tmp, "no-redis.yaml")
        with open(path, "w") as f:
            f.write(fixtures.to_yaml(fixtures.deep_merge(self.w.config, {"redis": fixtures.DELETE})))
        r = fixtures.run_walbust(["dry-run", "-c", path, "--check-redis"], timeout=TIMEOUT)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--check-redis needs a redis: section", r.stderr)
        # Without --check-redis no Redis is needed at all.
        r = fixtures.run_walbust(["dry-run", "-c", path, "--peek", "--max-changes", "1"], timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)


class DryRunWithoutLogicalWal(unittest.TestCase):
    def test_wal_level_replica(self):
        with PostgresServer(settings={"wal_level": "replica"}) as pg:
            fixtures.blog_schema(pg, marker=False)
            w = Walbust(pg, None, rules=[fixtures.blog_rules_path()], marker=False,
                        config={"redis": fixtures.DELETE})
            try:
                r = fixtures.run_walbust(["dry-run", "-c", w.config_path], timeout=TIMEOUT)
            finally:
                w.close()
            self.assertEqual(r.returncode, 1)
            self.assertIn("wal_level = logical", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main()
