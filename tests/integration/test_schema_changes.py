"""Schema changes never silence a rule: partitioned tables, renames, tables dropped and
recreated or removed from the publication, against real PostgreSQL and Redis.

A rule that can still match must keep deleting its keys; a rule that cannot must say so
(log line, walbust_rule_unbound, /healthz 503) while the other rules keep working.
"""

import os
import tempfile
import unittest

import signal

import fixtures
from faultlib import metric, scrape
from fixtures import NotifySocket, PostgresServer, RedisServer, Walbust, finish_walbust, http_get

TIMEOUT = 30

PARTITION_RULES = """\
version: 1
rules:
  - name: ev-pages
    table: ev
    delete: ["ev_{id}", "region_{region}_{id}", "ev_title_{title}"]
"""

PLAIN_RULES = """\
version: 1
rules:
  - name: item-pages
    table: item
    delete: ["item_{id}", "item_title_{title}"]
  - name: other-pages
    table: other
    delete: ["other_{id}"]
"""


class SchemaCase(unittest.TestCase):
    rules_text = PLAIN_RULES

    def setUp(self):
        self.pg = PostgresServer()
        self.addCleanup(self.pg.close)
        self.redis = RedisServer()
        self.addCleanup(self.redis.close)
        self.r = self.redis.client()
        self.tmp = tempfile.mkdtemp(prefix="walbust-schema-test-")
        self.rules = os.path.join(self.tmp, "rules.yaml")
        with open(self.rules, "w") as f:
            f.write(self.rules_text)
        self.port = fixtures.free_port()
        self.pg.execute(f"CREATE TABLE {fixtures.MARKER_TABLE} (id serial PRIMARY KEY, note text)")

    def walbust(self, config=None):
        w = Walbust(self.pg, self.redis, rules=[self.rules],
                    config=fixtures.deep_merge(
                        {"metrics": {"listen": f"127.0.0.1:{self.port}"}}, config))
        self.addCleanup(finish_walbust, self, w)
        return w

    def metric(self, name, **labels):
        return metric(scrape(self.port), name, **labels)

    def health(self):
        return http_get(self.port, "/healthz")

    def expect_deleted(self, w, keys, action):
        """Sets keys, runs action(), syncs, and asserts every key is gone."""
        for k in keys:
            self.r.set(k, "cached")
        action()
        w.sync()
        left = [k for k in keys if self.r.exists(k)]
        self.assertEqual(left, [], f"stale keys after {action.__doc__ or action}\n{w.log_tail()}")


class PartitionedTableTest(SchemaCase):
    rules_text = PARTITION_RULES

    def create_ev(self):
        self.pg.execute("""
            CREATE TABLE ev (id int NOT NULL, region text NOT NULL, title text,
                             PRIMARY KEY (id, region)) PARTITION BY LIST (region);
            CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu') PARTITION BY HASH (id);
            CREATE TABLE ev_eu_0 PARTITION OF ev_eu FOR VALUES WITH (modulus 2, remainder 0);
            CREATE TABLE ev_eu_1 PARTITION OF ev_eu FOR VALUES WITH (modulus 2, remainder 1);
            CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us');
        """)

    def exercise(self, w):
        """Changes in every partition, new partitions mid-stream, a row moved between them."""
        pg = self.pg
        for i, region in ((1, "eu"), (2, "eu"), (3, "us")):
            def insert(i=i, region=region):
                pg.execute("INSERT INTO ev VALUES (%s, %s, 'a')", (i, region))
            self.expect_deleted(w, [f"ev_{i}", f"region_{region}_{i}", "ev_title_a"], insert)

        def update_every_partition():
            pg.execute("UPDATE ev SET title = 'b'")
        self.expect_deleted(w, ["ev_1", "ev_2", "ev_3", "region_eu_1", "region_us_3",
                                "ev_title_a", "ev_title_b"], update_every_partition)

        def create_partition():
            pg.execute("CREATE TABLE ev_asia PARTITION OF ev FOR VALUES IN ('asia')")
            pg.execute("INSERT INTO ev VALUES (4, 'asia', 'c')")
        self.expect_deleted(w, ["ev_4", "region_asia_4", "ev_title_c"], create_partition)

        def attach_partition():
            # A partition does not take the parent's replica identity: give it FULL, as
            # setup did for the others, so the old title is sent too.
            pg.execute("CREATE TABLE ev_af (LIKE ev INCLUDING ALL)")
            pg.execute("ALTER TABLE ev_af REPLICA IDENTITY FULL")
            pg.execute("INSERT INTO ev_af VALUES (5, 'af', 'd')")
            pg.execute("ALTER TABLE ev ATTACH PARTITION ev_af FOR VALUES IN ('af')")
            pg.execute("UPDATE ev SET title = 'e' WHERE id = 5")
        self.expect_deleted(w, ["ev_5", "region_af_5", "ev_title_d", "ev_title_e"],
                            attach_partition)

        def move_row():
            pg.execute("UPDATE ev SET region = 'us' WHERE id = 1 AND region = 'eu'")
        self.expect_deleted(w, ["ev_1", "region_eu_1", "region_us_1"], move_row)

    def test_setup_publishes_via_the_root_and_every_partition_invalidates(self):
        self.create_ev()
        w = self.walbust()
        res = w.run_cli(["setup", "--apply"])
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(self.pg.query(
            "SELECT pubviaroot FROM pg_publication WHERE pubname = 'walbust'"), [(True,)])
        res = w.run_cli(["check", "--db"])
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn("contains partitioned table public.ev with publish_via_partition_root = "
                      "true", res.stdout)
        w.start()
        w.wait_streaming()
        self.exercise(w)
        self.assertEqual(self.metric("walbust_rule_unbound", rule="ev-pages"), 0)
        self.assertEqual(self.health()[0], 200)

    def test_an_existing_publication_of_leaves_invalidates_every_partition(self):
        self.create_ev()
        self.pg.execute(f"CREATE PUBLICATION walbust FOR TABLE ev, {fixtures.MARKER_TABLE}")
        w = self.walbust()
        res = w.run_cli(["setup", "--apply"])
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(self.pg.query(
            "SELECT pubviaroot FROM pg_publication WHERE pubname = 'walbust'"), [(False,)])
        res = w.run_cli(["check", "--db"])
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn("publish_via_partition_root = false: changes arrive under each partition",
                      res.stdout)
        w.start()
        w.wait_streaming()
        self.exercise(w)
        self.assertEqual(self.metric("walbust_rule_unbound", rule="ev-pages"), 0)

        # TRUNCATE names every partition: the rule's patterns are scanned once.
        def truncate():
            self.pg.execute("TRUNCATE ev")
        scans = self.redis_scans()
        self.expect_deleted(w, ["ev_9", "region_eu_9", "ev_title_z"], truncate)
        self.assertLessEqual(self.redis_scans() - scans, 3 * 3, "one SCAN round per pattern")

    def redis_scans(self):
        return self.r.info("commandstats").get("cmdstat_scan", {}).get("calls", 0)

    def test_a_rule_on_a_leaf_partition_matches_its_changes(self):
        self.create_ev()
        with open(self.rules, "a") as f:
            f.write("  - {name: eu-0, table: ev_eu_0, delete: [\"eu0_{id}\"]}\n")
        w = self.walbust()
        res = w.run_cli(["setup", "--apply"])
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        # A rule on a partition of another rule table: published leaf by leaf.
        self.assertEqual(self.pg.query(
            "SELECT pubviaroot FROM pg_publication WHERE pubname = 'walbust'"), [(False,)])
        w.start()
        w.wait_streaming()
        ids = [i for i in range(1, 9)
               if self.pg.query("SELECT satisfies_hash_partition('ev_eu'::regclass, 2, 0, %s)",
                                (i,))[0][0]]

        def insert():
            self.pg.execute("INSERT INTO ev VALUES (%s, 'eu', 'x')", (ids[0],))
        self.expect_deleted(w, [f"ev_{ids[0]}", f"eu0_{ids[0]}"], insert)

    def test_check_names_a_leaf_rule_published_under_its_root(self):
        self.create_ev()
        self.pg.execute("CREATE PUBLICATION walbust FOR TABLE ev WITH "
                        "(publish_via_partition_root = true)")
        with open(self.rules, "w") as f:
            f.write("version: 1\nrules:\n  - {name: us, table: ev_us, delete: [\"us_{id}\"]}\n")
        w = self.walbust()
        res = w.run_cli(["check", "--db"])
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn("under its partition root public.ev", res.stdout)


class RenameAndRecreateTest(SchemaCase):
    def create_tables(self, publish=True):
        self.pg.execute("""
            CREATE TABLE item (id int PRIMARY KEY, title text);
            ALTER TABLE item REPLICA IDENTITY FULL;
            CREATE TABLE other (id int PRIMARY KEY);
            INSERT INTO item VALUES (1, 'a'), (2, 'b');
            INSERT INTO other VALUES (1);
        """)
        if publish:
            self.pg.execute(f"CREATE PUBLICATION walbust FOR TABLE item, other, "
                            f"{fixtures.MARKER_TABLE}")

    def test_a_rename_keeps_deleting_warns_and_counts(self):
        self.create_tables()
        w = self.walbust()
        w.start()
        w.wait_streaming()

        def rename_then_update():
            self.pg.execute("ALTER TABLE item RENAME TO item_renamed")
            self.pg.execute("UPDATE item_renamed SET title = 'c' WHERE id = 1")
        self.expect_deleted(w, ["item_1", "item_title_a", "item_title_c"], rename_then_update)
        w.wait_for_log(r"table public\.item was renamed to public\.item_renamed")
        w.wait_for(lambda: self.metric("walbust_schema_changes_total", kind="rename") == 1,
                   TIMEOUT, message="rename counted")
        self.assertEqual(self.metric("walbust_rule_unbound", rule="item-pages"), 0)

        # A restart with unchanged rules binds by name: loud, and the other rules go on.
        self.assertEqual(w.stop(), 0)
        w.start()
        w.wait_streaming()
        w.wait_for_log(r"rule item-pages .*cannot match: table public\.item does not exist")
        status, body = self.health()
        self.assertEqual(status, 503, body)
        self.assertIn("rule item-pages: table public.item does not exist", body)
        self.assertEqual(self.metric("walbust_rule_unbound", rule="item-pages"), 1)
        self.assertEqual(self.metric("walbust_rule_unbound", rule="other-pages"), 0)

        def update_other():
            self.pg.execute("UPDATE other SET id = 2 WHERE id = 1")
        self.expect_deleted(w, ["other_1", "other_2"], update_other)

        # Fixed by renaming back: bound again within the catalog interval.
        self.pg.execute("ALTER TABLE item_renamed RENAME TO item")
        w.wait_for(lambda: self.metric("walbust_rule_unbound", rule="item-pages") == 0,
                   TIMEOUT, message="item-pages bound again")
        w.wait_for(lambda: self.health()[0] == 200, TIMEOUT, message="healthy again")

    def test_a_table_dropped_from_the_publication_is_reported_within_ten_seconds(self):
        self.create_tables()
        # An idle stream with the default status interval: the catalog check still runs.
        w = self.walbust({"postgres": {"status_interval": "10s"}})
        w.start()
        w.wait_streaming()
        self.assertEqual(self.health()[0], 200)
        self.pg.execute("ALTER PUBLICATION walbust DROP TABLE item")
        w.wait_for(lambda: self.metric("walbust_rule_unbound", rule="item-pages") == 1,
                   15, message="item-pages unbound")
        status, body = self.health()
        self.assertEqual(status, 503, body)
        self.assertIn("rule item-pages: table public.item is not in publication walbust", body)
        w.wait_for_log(r"rule item-pages .*cannot match: table public\.item is not in publication")

        def update_other():
            self.pg.execute("UPDATE other SET id = 3 WHERE id = 1")
        self.expect_deleted(w, ["other_1", "other_3"], update_other)

        self.pg.execute("ALTER PUBLICATION walbust ADD TABLE item")
        w.wait_for(lambda: self.metric("walbust_rule_unbound", rule="item-pages") == 0,
                   15, message="item-pages bound again")

        def update_item():
            self.pg.execute("UPDATE item SET title = 'z' WHERE id = 2")
        self.expect_deleted(w, ["item_2", "item_title_b", "item_title_z"], update_item)

    def test_a_table_dropped_and_recreated_is_bound_anew(self):
        self.create_tables()
        w = self.walbust()
        w.start()
        w.wait_streaming()

        def recreate():
            self.pg.execute("DROP TABLE item")
            self.pg.execute("CREATE TABLE item (id int PRIMARY KEY, title text)")
            self.pg.execute("ALTER TABLE item REPLICA IDENTITY FULL")
            self.pg.execute("ALTER PUBLICATION walbust ADD TABLE item")
            self.pg.execute("INSERT INTO item VALUES (7, 'n')")
        self.expect_deleted(w, ["item_7", "item_title_n"], recreate)
        w.wait_for(lambda: self.metric("walbust_schema_changes_total", kind="recreate") == 1,
                   15, message="recreate counted")
        w.wait_for_log(r"table public\.item was dropped and created again")
        self.assertEqual(self.metric("walbust_rule_unbound", rule="item-pages"), 0)

    def test_a_dropped_column_unbinds_the_rule_that_renders_it(self):
        self.create_tables()
        w = self.walbust()
        w.start()
        w.wait_streaming()
        self.pg.execute("ALTER TABLE item DROP COLUMN title")
        w.wait_for(lambda: self.metric("walbust_rule_unbound", rule="item-pages") == 1,
                   15, message="item-pages unbound")
        self.assertIn("column title of table public.item does not exist", self.health()[1])
        self.assertEqual(self.metric("walbust_rule_unbound", rule="other-pages"), 0)
        self.pg.execute("ALTER TABLE item ADD COLUMN title text")
        w.wait_for(lambda: self.metric("walbust_rule_unbound", rule="item-pages") == 0,
                   15, message="item-pages bound again")

    def test_a_missing_table_at_start_is_loud_and_the_other_rules_work(self):
        self.create_tables()
        self.pg.execute("DROP TABLE item")
        w = self.walbust()
        notify = NotifySocket(self.tmp)
        self.addCleanup(notify.close)
        w.start(env={"NOTIFY_SOCKET": notify.path})
        w.wait_streaming()
        w.wait_for_log(r"rule item-pages .*cannot match: table public\.item does not exist")
        status, body = self.health()
        self.assertEqual(status, 503, body)

        def update_other():
            self.pg.execute("UPDATE other SET id = 4 WHERE id = 1")
        self.expect_deleted(w, ["other_1", "other_4"], update_other)
        # STATUS= says so with the progress line (every 10 s).
        w.wait_for(lambda: any("cannot match: rule item-pages" in f.get("STATUS", "")
                               for _, f in notify.messages), 20, message="STATUS= naming the rule")
        # The same binding in dry-run: the rule is named there too.
        res = w.run_cli(["dry-run", "--duration", "0.5"])
        self.assertRegex(res.stderr, r"rule item-pages .*cannot match")

    def test_a_reload_naming_a_missing_table_is_loud_until_the_rule_goes(self):
        self.create_tables()
        w = self.walbust()
        w.start()
        w.wait_streaming()
        with open(self.rules, "a") as f:
            f.write("  - {name: nope-pages, table: nope, delete: [\"nope_{id}\"]}\n")
        w.signal(signal.SIGHUP)
        w.wait_for_log(r"rule nope-pages .*cannot match: table public\.nope does not exist")
        w.wait_for(lambda: self.metric("walbust_rule_unbound", rule="nope-pages") == 1,
                   TIMEOUT, message="nope-pages unbound")
        self.assertIn("rule nope-pages: table public.nope does not exist", self.health()[1])

        def update_item():
            self.pg.execute("UPDATE item SET title = 'q' WHERE id = 1")
        self.expect_deleted(w, ["item_1", "item_title_a", "item_title_q"], update_item)
        with open(self.rules, "w") as f:
            f.write(PLAIN_RULES)
        w.signal(signal.SIGHUP)
        w.wait_for(lambda: self.metric("walbust_rule_unbound", rule="nope-pages") == 0,
                   TIMEOUT, message="nope-pages gone")
        w.wait_for(lambda: self.health()[0] == 200, TIMEOUT, message="healthy again")


if __name__ == "__main__":
    unittest.main()
