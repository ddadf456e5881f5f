"""walbust check --db and walbust setup [--apply] against real PostgreSQL 15 servers.

Run from tests/integration with WALBUST_BIN (the built binary) and WALBUST_SOURCE_DIR (the
repository root), as ctest does. The servers are the lab's throwaway PostgreSQL clusters
(fixtures.PostgresServer); a server that cannot start fails the test.
"""

import os
import shutil
import tempfile
import unittest

import fixtures
from fixtures import PostgresServer, free_port

BLOG_RULES = os.path.join(fixtures.SOURCE_DIR, "rules", "blog.yaml")

BLOG_SCHEMA = """
CREATE TABLE blog_category (id serial PRIMARY KEY, name text NOT NULL, slug text NOT NULL);
CREATE TABLE blog_post (
    id serial PRIMARY KEY, title text NOT NULL, slug text NOT NULL, content text,
    author_id int, category_id int REFERENCES blog_category, is_featured bool DEFAULT false,
    view_count int DEFAULT 0, created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE blog_comment (
    id serial PRIMARY KEY, post_id int REFERENCES blog_post, author_name text, body text,
    created_at timestamptz DEFAULT now());
"""


# The checks run as the superuser unless a test names another role.
def dsn(pg, dbname, user="postgres"):
    return pg.conninfo(user, dbname)


def sql(pg, dbname, statements):
    return pg.execute(statements, user="postgres", dbname=dbname)


def create_database(pg, name, schema=BLOG_SCHEMA):
    sql(pg, "postgres", f"CREATE DATABASE {name}")
    if schema:
        sql(pg, name, schema)


class CheckSetupTest(unittest.TestCase):
    servers = []

    @classmethod
    def setUpClass(cls):
        fixtures.walbust_binary()  # fails early when the binary is missing
        cls.pg = PostgresServer()
        cls.servers.append(cls.pg)
        cls.tmp = tempfile.mkdtemp(prefix="walbust-check-")

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            s.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def config(self, name, dsn, rules=BLOG_RULES, slot="walbust", publication="walbust", create_slot=True,
               state_dir=None):
        path = os.path.join(self.tmp, name + ".yaml")
        state_dir = state_dir or self.tmp
        with open(path, "w") as f:
            f.write(f'postgres:\n  dsn: "{dsn}"\n  slot: {slot}\n  publication: {publication}\n'
                    f"  create_slot: {'true' if create_slot else 'false'}\n"
                    f"rules:\n  - {rules}\nmetrics:\n  listen: \"\"\nstate_dir: {state_dir}\n")
        return path

    def walbust(self, *args):
        return fixtures.run_walbust(list(args))

    def psql(self, dbname, script):
        return fixtures.psql(self.pg, user="postgres", dbname=dbname, input=script)

    def lines(self, out, prefix):
        return [line for line in out.splitlines() if line.startswith(prefix)]

    def database_state(self, dbname):
        return {
            "publication": sql(self.pg, dbname, "SELECT pubname, pubinsert, pubupdate, pubdelete, pubtruncate "
                                               "FROM pg_publication ORDER BY 1"),
            "tables": sql(self.pg, dbname, "SELECT pubname, schemaname, tablename FROM pg_publication_tables "
                                          "ORDER BY 1, 2, 3"),
            "identity": sql(self.pg, dbname, "SELECT relname, relreplident FROM pg_class "
                                            "WHERE relname LIKE 'blog_%' AND relkind = 'r' ORDER BY 1"),
            "slots": sql(self.pg, dbname, "SELECT slot_name, plugin, slot_type, database, restart_lsn "
                                         "FROM pg_replication_slots ORDER BY 1"),
        }

    def assert_fix_lines(self, out):
        for line in self.lines(out, "FAIL  "):
            self.assertIn(" ; fix: ", line)

    def test_a_fresh_database_setup_then_check(self):
        create_database(self.pg, "blog_a")
        cfg = self.config("a", dsn(self.pg, "blog_a"))

        res = self.walbust("check", "-c", cfg, "--db")
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assert_fix_lines(res.stdout)
        fails = self.lines(res.stdout, "FAIL  ")
        self.assertIn('FAIL  publication walbust does not exist ; fix: CREATE PUBLICATION "walbust" FOR TABLE '
                      '"public"."blog_category", "public"."blog_comment", "public"."blog_post" '
                      "WITH (publish = 'insert, update, delete, truncate');", fails)
        self.assertTrue(any(line.startswith("FAIL  table public.blog_post has replica identity default (primary key id) "
                                            "but needs FULL") and
                            line.endswith('fix: ALTER TABLE "public"."blog_post" REPLICA IDENTITY FULL;')
                            for line in fails), fails)
        self.assertTrue(any(line.startswith("FAIL  table public.blog_comment has replica identity default (primary key "
                                            "id) but needs FULL: rules render previous values of post_id")
                            for line in fails), fails)
        # blog_category's rules render only {id}, its primary key: no FULL needed.
        self.assertFalse(any("blog_category" in line for line in fails[1:]), fails)
        self.assertIn("ok    wal_level is logical", res.stdout)
        self.assertRegex(res.stdout.splitlines()[-1], r"^\d+ checks, 3 problems$")

        res = self.walbust("setup", "-c", cfg)
        self.assertEqual(res.returncode, 0, res.stderr)
        script = res.stdout
        self.assertIn("CREATE PUBLICATION", script)
        self.assertIn('ALTER TABLE "public"."blog_post" REPLICA IDENTITY FULL;', script)
        self.assertIn('ALTER TABLE "public"."blog_comment" REPLICA IDENTITY FULL;', script)
        self.assertNotIn('ALTER TABLE "public"."blog_category"', script)
        self.assertIn("pg_create_logical_replication_slot('walbust', 'pgoutput')", script)

        for attempt in (1, 2):
            res = self.psql("blog_a", script)
            self.assertEqual(res.returncode, 0, f"psql run {attempt}: {res.stderr}")
        state = self.database_state("blog_a")
        self.assertEqual(state["publication"], [("walbust", True, True, True, True)])
        self.assertEqual([t[2] for t in state["tables"]], ["blog_category", "blog_comment", "blog_post"])
        self.assertEqual(state["identity"], [("blog_category", "d"), ("blog_comment", "f"), ("blog_post", "f")])
        self.assertEqual([s[:4] for s in state["slots"]], [("walbust", "pgoutput", "logical", "blog_a")])

        res = self.walbust("check", "-c", cfg, "--db")
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(self.lines(res.stdout, "FAIL"), [])
        self.assertRegex(res.stdout.splitlines()[-1], r"^\d+ checks, 0 problems$")

        # Tailored output on a prepared database is the same script, marked as in place.
        res = self.walbust("setup", "-c", cfg)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("(already in place)", res.stdout)

        # --apply on a prepared database changes nothing.
        before = self.database_state("blog_a")
        res = self.walbust("setup", "-c", cfg, "--apply")
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn("0 statements applied", res.stdout)
        self.assertEqual(self.lines(res.stdout, "done  "), [])
        self.assertEqual(self.database_state("blog_a"), before)

    def test_a_apply_is_idempotent(self):
        create_database(self.pg, "blog_apply")
        cfg = self.config("apply", dsn(self.pg, "blog_apply"), slot="walbust_apply", publication="pub apply")

        res = self.walbust("setup", "-c", cfg, "--apply")
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertGreater(len(self.lines(res.stdout, "done  ")), 0, res.stdout)
        self.assertRegex(res.stdout, r"\n\d+ checks, 0 problems\n$")
        first = self.database_state("blog_apply")
        self.assertEqual(first["publication"], [("pub apply", True, True, True, True)])
        self.assertEqual(len(first["tables"]), 3)
        self.assertEqual([s[:2] for s in first["slots"] if s[0] == "walbust_apply"], [("walbust_apply", "pgoutput")])

        res = self.walbust("setup", "-c", cfg, "--apply")
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(self.lines(res.stdout, "done  "), [])
        self.assertIn("0 statements applied", res.stdout)
        self.assertEqual(self.database_state("blog_apply"), first)
        sql(self.pg, "blog_apply", "SELECT pg_drop_replication_slot('walbust_apply')")

    def test_a_existing_publication_gets_missing_ops_and_tables(self):
        create_database(self.pg, "blog_partial")
        sql(self.pg, "blog_partial", "CREATE PUBLICATION walbust FOR TABLE blog_post WITH (publish = 'insert')")
        cfg = self.config("partial", dsn(self.pg, "blog_partial"), slot="walbust_partial")
        res = self.walbust("check", "-c", cfg, "--db")
        self.assertEqual(res.returncode, 1)
        self.assertIn("FAIL  publication walbust does not publish update, delete, truncate, which the rules listen to"
                      " ; fix: ALTER PUBLICATION \"walbust\" SET (publish = 'insert, update, delete, truncate');",
                      res.stdout)
        self.assertIn('FAIL  publication walbust does not contain table public.blog_comment ; fix: '
                      'ALTER PUBLICATION "walbust" ADD TABLE "public"."blog_comment";', res.stdout)
        res = self.walbust("setup", "-c", cfg)
        for attempt in (1, 2):
            r = self.psql("blog_partial", res.stdout)
            self.assertEqual(r.returncode, 0, f"psql run {attempt}: {r.stderr}")
        res = self.walbust("check", "-c", cfg, "--db")
        self.assertEqual(res.returncode, 0, res.stdout)
        sql(self.pg, "blog_partial", "SELECT pg_drop_replication_slot('walbust_partial')")

    def test_b_missing_column(self):
        create_database(self.pg, "blog_b")
        rules = os.path.join(self.tmp, "missing-column.yaml")
        with open(rules, "w") as f:
            f.write("version: 1\nrules:\n  - name: post-by-subtitle\n    table: blog_post\n"
                    "    delete: [\"post_{subtitle}\"]\n")
        cfg = self.config("b", dsn(self.pg, "blog_b"), rules=rules, slot="walbust_b")
        res = self.walbust("check", "-c", cfg, "--db")
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        fails = [line for line in self.lines(res.stdout, "FAIL  ") if "subtitle" in line]
        self.assertEqual(len(fails), 1, res.stdout)
        self.assertIn("column subtitle of table public.blog_post does not exist", fails[0])
        self.assertIn(f"(named by rule post-by-subtitle at {rules}:3)", fails[0])
        self.assertNotIn("needs FULL", res.stdout)
        self.assertIn(" ; fix: ", fails[0])

    def test_c_wal_level_replica(self):
        pg = PostgresServer(settings={"wal_level": "replica"})
        self.servers.append(pg)
        create_database(pg, "blog_c")
        cfg = self.config("c", dsn(pg, "blog_c"))
        res = self.walbust("check", "-c", cfg, "--db")
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn("FAIL  wal_level is replica, logical decoding needs logical ; fix: "
                      "ALTER SYSTEM SET wal_level = logical; -- then restart PostgreSQL", res.stdout)
        # setup stops short of the slot, which needs wal_level = logical.
        res = self.walbust("setup", "-c", cfg)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("ALTER SYSTEM SET wal_level = logical;", res.stdout)
        self.assertNotIn("pg_create_logical_replication_slot", res.stdout)

    def test_d_role_without_replication(self):
        create_database(self.pg, "blog_d")
        sql(self.pg, "blog_d", "CREATE ROLE app_reader LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_reader")
        cfg = self.config("d", dsn(self.pg, "blog_d", user="app_reader"), slot="walbust_d")
        res = self.walbust("check", "-c", cfg, "--db")
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn("FAIL  role app_reader may not replicate (it needs the REPLICATION attribute or superuser) ; "
                      'fix: ALTER ROLE "app_reader" REPLICATION;', res.stdout)
        sql(self.pg, "postgres", "ALTER ROLE app_reader REPLICATION")
        res = self.walbust("check", "-c", cfg, "--db")
        self.assertIn("ok    role app_reader may replicate", res.stdout)

    def test_d_missing_slot_after_streaming_is_a_gap(self):
        create_database(self.pg, "blog_gap")
        state_dir = os.path.join(self.tmp, "gap-state")
        os.mkdir(state_dir)
        with open(os.path.join(state_dir, "walbust-walbust_gap.state"), "w") as f:
            f.write('{"system_identifier": "1", "database": "blog_gap", "slot": "walbust_gap", '
                    '"acknowledged_lsn": "0/16B3748"}')
        cfg = self.config("gap", dsn(self.pg, "blog_gap"), slot="walbust_gap", state_dir=state_dir)
        res = self.walbust("check", "-c", cfg, "--db")
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn("FAIL  slot walbust_gap is missing although walbust streamed from it up to 0/16B3748: changes "
                      "were missed and caches may be stale ; fix: -- set on_gap: flush_rules (or flushdb)", res.stdout)

    def test_e_unreachable_database(self):
        port = free_port()
        cfg = self.config("e", f"host=127.0.0.1 port={port} dbname=nothing user=nobody password=s3cret-pw "
                               "connect_timeout=5")
        res = self.walbust("check", "-c", cfg, "--db")
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertNotIn("FAIL", res.stdout)
        err = res.stderr.strip().splitlines()
        self.assertEqual(len(err), 1, res.stderr)
        self.assertIn("walbust check --db: ", err[0])
        self.assertIn(str(port), err[0])
        self.assertNotIn("s3cret-pw", res.stderr + res.stdout)

        # setup falls back to the conservative script; --apply cannot.
        res = self.walbust("setup", "-c", cfg)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("-- Not tailored", res.stdout)
        self.assertIn('ALTER TABLE "public"."blog_category" REPLICA IDENTITY FULL;', res.stdout)
        self.assertNotIn("s3cret-pw", res.stderr + res.stdout)
        res = self.walbust("setup", "-c", cfg, "--apply")
        self.assertEqual(res.returncode, 1)
        self.assertEqual(len(res.stderr.strip().splitlines()), 1, res.stderr)

    def test_e_invalid_config_is_a_usage_error(self):
        path = os.path.join(self.tmp, "invalid.yaml")
        with open(path, "w") as f:
            f.write("postgres:\n  dsnn: x\nrules: []\n")
        self.assertEqual(self.walbust("check", "-c", path, "--db").returncode, 2)
        self.assertEqual(self.walbust("setup", "-c", path).returncode, 2)

    def test_f_conservative_script_runs_twice(self):
        """The script printed without a database connection is valid SQL too."""
        create_database(self.pg, "blog_f")
        cfg = self.config("f", f"host=127.0.0.1 port={free_port()} dbname=x connect_timeout=5", slot="walbust_f")
        res = self.walbust("setup", "-c", cfg)
        self.assertEqual(res.returncode, 0, res.stderr)
        for attempt in (1, 2):
            r = self.psql("blog_f", res.stdout)
            self.assertEqual(r.returncode, 0, f"psql run {attempt}: {r.stderr}")
        state = self.database_state("blog_f")
        self.assertEqual(state["identity"], [("blog_category", "f"), ("blog_comment", "f"), ("blog_post", "f")])
        sql(self.pg, "blog_f", "SELECT pg_drop_replication_slot('walbust_f')")


if __name__ == "__main__":
    unittest.main()
