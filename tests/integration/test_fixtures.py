"""Self-test of the fixtures: throwaway PostgreSQL with logical WAL and Redis start, a slot
can be created and read, and the key oracle matches the blog rules' contract."""

import contextlib
import os
import tempfile
import unittest

import fixtures
from fixtures import (
    Lsn,
    PostgresServer,
    RedisServer,
    blog_keys_for_category,
    blog_keys_for_comment,
    blog_keys_for_post,
    blog_schema,
)


class PostgresFixtureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer()
        cls.addClassCleanup(cls.pg.close)
        blog_schema(cls.pg, audit=True)

    def test_settings(self):
        self.assertEqual(self.pg.query("SHOW wal_level")[0][0], "logical")
        self.assertEqual(self.pg.query("SHOW max_replication_slots")[0][0], "20")
        self.assertEqual(self.pg.query("SHOW synchronous_commit")[0][0], "on")
        self.assertEqual(self.pg.query("SHOW wal_sender_timeout")[0][0], "1min")
        role = self.pg.query(
            "SELECT rolreplication, rolcanlogin FROM pg_roles WHERE rolname = 'walbust'")
        self.assertEqual(role, [(True, True)])
        owner = self.pg.query(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'walbust'")
        self.assertEqual(owner, [("walbust",)])
        self.assertIn("port=%d" % self.pg.port, self.pg.dsn)
        self.assertTrue(os.path.isdir(self.pg.sockdir))

    def test_slot_peek_sees_published_changes_only(self):
        self.pg.create_slot("fixture_peek")
        self.addCleanup(self.pg.drop_slot, "fixture_peek")
        info = self.pg.slot_info("fixture_peek")
        self.assertEqual(info["plugin"], "pgoutput")
        self.assertFalse(info["active"])
        self.assertIsInstance(info["confirmed_flush_lsn"], Lsn)
        self.assertIsNone(self.pg.slot_info("no_such_slot"))

        self.pg.execute("CREATE TABLE unpublished (id int)")
        self.pg.execute("INSERT INTO unpublished VALUES (1)")
        self.assertEqual(self.pg.pending_xids("fixture_peek"), [])

        self.pg.execute("INSERT INTO blog_category (name, slug) VALUES ('a', 'a')")
        msgs = self.pg.peek_changes("fixture_peek")
        kinds = [data[:1] for _, _, data in msgs]
        self.assertEqual(kinds, [b"B", b"R", b"I", b"C"])
        self.assertEqual(len(self.pg.pending_xids("fixture_peek")), 1)
        # peeking consumes nothing
        self.assertEqual(len(self.pg.peek_changes("fixture_peek")), 4)

    def test_lsn_and_commit_end(self):
        a = self.pg.current_wal_lsn()
        conn = self.pg.connect(autocommit=False)
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO blog_category (name, slug) VALUES ('b', 'b')")
            end = fixtures.commit_and_get_end_lsn(conn)
        finally:
            conn.close()
        self.assertGreater(end, a)
        self.assertEqual(Lsn.parse(str(end)), end)
        self.assertEqual(str(Lsn.parse("1/A0")), "1/A0")
        self.assertEqual(fixtures.end_lsn_from_insert_lsn(8192 * 3 + 24), 8192 * 3)
        self.assertEqual(fixtures.end_lsn_from_insert_lsn(16 * 2**20 + 40), 16 * 2**20)
        self.assertEqual(fixtures.end_lsn_from_insert_lsn(8192 * 3 + 48), 8192 * 3 + 48)

    def test_audit_records_cascades(self):
        ids = fixtures.blog_sample_data(self.pg, categories=2, posts=4, comments=6, seed=3)
        _, last = fixtures.audit_expected_keys(self.pg)
        cat = ids["categories"][0]
        posts = [r[0] for r in self.pg.query(
            "SELECT id FROM blog_post WHERE category_id = %s", (cat,))]
        comments = self.pg.query(
            "SELECT post_id FROM blog_comment WHERE post_id = ANY(%s)", (posts,))
        self.pg.execute("DELETE FROM blog_category WHERE id = %s", (cat,))
        keys, _ = fixtures.audit_expected_keys(self.pg, last)
        expected = {f"category_posts_{cat}", "home_page_posts"}
        for p in posts:
            expected.add(f"post_detail_{p}")
        self.assertTrue(expected <= keys, (expected, keys))
        deleted_comments = self.pg.query(
            "SELECT count(*) FROM walbust_audit WHERE seq > %s AND tbl = 'blog_comment'"
            " AND op = 'delete'", (last,))[0][0]
        self.assertEqual(deleted_comments, len(comments))

    def test_restart_keeps_data(self):
        self.pg.execute("CREATE TABLE survives (id int)")
        self.pg.execute("INSERT INTO survives VALUES (7)")
        self.pg.restart()
        self.assertEqual(self.pg.query("SELECT id FROM survives"), [(7,)])


    def test_psql_runs_sql_as_the_given_role_and_stops_at_the_first_error(self):
        r = fixtures.psql(self.pg, "-At", "-c", "SELECT current_user, current_database()")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "walbust|walbust"), r.stderr)
        r = fixtures.psql(self.pg, "-At", user="postgres", dbname="postgres",
                          input="SELECT 1/0;\nSELECT 'not reached';\n")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("division by zero", r.stderr)
        self.assertNotIn("not reached", r.stdout)


class FailureTest(unittest.TestCase):
    def test_postgres_that_cannot_start_raises_with_log(self):
        with self.assertRaises(fixtures.ServerError) as cm:
            PostgresServer(settings={"shared_buffers": "'lots'"})
        self.assertIn("shared_buffers", str(cm.exception))


class WalbustDriverTest(unittest.TestCase):
    """The process driver, with a stand-in program instead of the real binary."""

    @contextlib.contextmanager
    def fake_walbust(self, script):
        """A driver whose binary is the shell script `script`; no server runs behind it."""
        with tempfile.TemporaryDirectory() as d, PostgresServer(start=False) as pg, \
                RedisServer(start=False) as r:
            fake = os.path.join(d, "fake-walbust")
            with open(fake, "w") as f:
                f.write("#!/bin/sh\n" + script)
            os.chmod(fake, 0o755)
            pg.port, r.port = 1, 2
            w = fixtures.Walbust(pg, r, binary=fake, marker=False)
            try:
                yield w
            finally:
                w.close()

    def test_start_log_rss_stop(self):
        with self.fake_walbust("trap 'echo got TERM; exit 0' TERM\n"
                               "echo \"args: $*\" >&2\n"
                               "while :; do sleep 0.05; done\n") as w:
            w.start(["--endpos", "0/10"])
            m = w.wait_for_log(r"args: run -c (\S+) --endpos 0/10")
            self.assertEqual(m.group(1), w.config_path)
            w.start_rss_sampler()
            w.wait_for(lambda: w.peak_rss_kb > 0, 5, message="an RSS sample")
            self.assertGreater(w.rss_kb(), 0)
            self.assertEqual(w.stop(), 0)
            self.assertIn("got TERM", w.log())
            self.assertIsNone(w.rss_kb())
            w.start()
            self.assertNotIn("--endpos", w.log())
            w.kill9()
            self.assertEqual(w.returncode, -9)

    def test_run_cli_and_popen_cli_run_the_binary_the_driver_was_given(self):
        with self.fake_walbust('echo "fake $*"\n') as w:
            out = w.run_cli(["audit", "--sample", "5"]).stdout
            self.assertEqual(out, f"fake audit -c {w.config_path} --sample 5\n")
            proc = w.popen_cli(["dry-run", "--peek"])
            out, _ = proc.communicate(timeout=30)
            self.assertEqual(out, f"fake dry-run -c {w.config_path} --peek\n")


class RedisFixtureTest(unittest.TestCase):
    def test_start_set_restart(self):
        with RedisServer(notify_keyspace_events="Kg") as r:
            c = r.client()
            self.assertTrue(c.ping())
            c.set("a", "1")
            self.assertEqual(c.config_get("notify-keyspace-events")["notify-keyspace-events"],
                             "gK")
            self.assertEqual(c.config_get("save")["save"], "")
            port = r.port
            r.restart()
            self.assertEqual(r.port, port)
            self.assertIsNone(r.client().get("a"))
            fixtures.fill_keys(r.client(), ["x", "y"])
            self.assertEqual(fixtures.existing_keys(r.client(), ["x", "y", "z"]), {"x", "y"})
        self.assertFalse(os.path.exists(r.tmp))


class OracleTest(unittest.TestCase):
    def test_post_move_clears_both_categories_and_authors(self):
        old = {"id": 7, "category_id": 3, "author_id": 1, "view_count": 10, "title": "a"}
        new = dict(old, category_id=4, author_id=2)
        self.assertEqual(blog_keys_for_post(new=new, old=old), {
            "post_detail_7", "home_page_posts", "category_posts_3", "category_posts_4",
            "author_posts_1", "author_posts_2"})

    def test_view_count_only_clears_nothing(self):
        old = {"id": 7, "category_id": 3, "author_id": 1, "view_count": 10}
        self.assertEqual(blog_keys_for_post(new=dict(old, view_count=11), old=old), set())
        self.assertEqual(
            blog_keys_for_post(new=dict(old, view_count=11, title="x"), old=dict(old, title="y")),
            {"post_detail_7", "home_page_posts", "category_posts_3", "author_posts_1"})

    def test_comment_and_category(self):
        self.assertEqual(blog_keys_for_comment(new={"post_id": 5}, old={"post_id": 6}),
                         {"post_detail_5", "post_detail_6"})
        self.assertEqual(blog_keys_for_category(old={"id": 2}),
                         {"category_posts_2", "home_page_posts"})

    def test_config_yaml(self):
        with PostgresServer(start=False) as pg:
            pg.port = 5999
            with RedisServer(start=False) as r:
                r.port = 6999
                rules = fixtures.blog_rules_path()
                try:
                    w = fixtures.Walbust(pg, r, rules=[rules], binary="/bin/true",
                                         config={"log": {"level": "debug"}})
                except fixtures.ServerError:
                    self.fail("binary given explicitly must not be looked up")
                try:
                    with open(w.config_path) as f:
                        text = f.read()
                    self.assertIn('dsn: "host=127.0.0.1 port=5999 dbname=walbust user=walbust"',
                                  text)
                    self.assertIn('url: "redis://127.0.0.1:6999/0"', text)
                    self.assertIn('level: "debug"', text)
                    self.assertIn('listen: ""', text)
                    self.assertIn("marker-rules.yaml", text)
                finally:
                    w.close()


if __name__ == "__main__":
    unittest.main()
