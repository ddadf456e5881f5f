"""`walbust audit` against real PostgreSQL and Redis servers.

Redis is filled by the test with families that the blog and Django example rules cover
and families none does (with and without TTL, UUIDs, MD5 fragment keys, binary keys). The
JSON output is compared exactly; exit codes, the read-only promise (MONITOR), a cluster
target, the --sample cap and the memory used on a million keys are checked.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

import fixtures
from cluster_fixtures import RedisCluster, key_slot
from fixtures import PostgresServer, RedisServer, Walbust

EXTRA_RULES = """\
version: 1
rules:
  - name: ratings
    table: blog_rating
    delete: ["rating_{id}"]
"""

# Commands that read or set up a connection; anything else would be a write.
READ_ONLY = {"SCAN", "PTTL", "PING", "SELECT", "AUTH", "HELLO", "CLUSTER"}

SESSIONS = sorted(str(uuid.UUID(int=0x0B7E1D0C4F6A4C2E9D3B2A1F0E9C8B7A + i)) for i in range(5))


def letters(n):
    """n written in base 26 with letters only, so no digit run merges two families."""
    out = ""
    while True:
        out = chr(97 + n % 26) + out
        n //= 26
        if n == 0:
            return out


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def audit_json(w, *args, expect_rc=None):
    r = w.run_cli(["audit", "--format", "json", *args])
    if expect_rc is not None and r.returncode != expect_rc:
        raise AssertionError(f"exit {r.returncode}, expected {expect_rc}\n{r.stdout}\n{r.stderr}")
    return r, [json.loads(line) for line in r.stdout.splitlines()]


def family(name, keys, no_ttl, covered, example, rules=()):
    return {"type": "family", "family": name, "keys": keys, "no_ttl": no_ttl,
            "covered": covered, "example": example, "rules": list(rules)}


def fill_blog_keys(client):
    pipe = client.pipeline(transaction=False)
    for i in range(1, 13):
        pipe.set(f"user_profile_{i}", "x")
    for s in SESSIONS:
        pipe.set(f"session:{s}", "x", ex=600)
    for i in range(1, 4):
        pipe.set(f"template.cache.sidebar.{md5(f'{i}:')}", "x", ex=600)
    for i in (1, 2):
        pipe.set(b"bin\xff\x00:" + str(i).encode(), "x")
    for i in range(1, 21):
        pipe.set(f"post_detail_{i}", "x", ex=600)
    for i in range(1, 5):
        pipe.set(f"rating_{i}", "x", ex=600)
    for i in range(1, 4):
        pipe.set(f"category_posts_{i}", "x", ex=600)
    for i in (1, 2):
        pipe.set(f"author_posts_{i}", "x", ex=600)
    pipe.set("home_page_posts", "x")
    pipe.execute()


BLOG_EXPECTED = [
    family("user_profile_*", 12, 12, False, "user_profile_1"),
    family("session:*", 5, 0, False, f"session:{SESSIONS[0]}"),
    family("template.cache.sidebar.*", 3, 0, False,
           "template.cache.sidebar." + min(md5(f"{i}:") for i in range(1, 4))),
    family("bin\ufffd\u0000:*", 2, 2, False, "bin\ufffd\u0000:1"),
    family("post_detail_*", 20, 0, True, "post_detail_1", ["post-pages", "comment-post-page"]),
    family("rating_*", 4, 0, True, "rating_1", ["ratings"]),
    family("category_posts_*", 3, 0, True, "category_posts_1", ["post-pages", "category-pages"]),
    family("author_posts_*", 2, 0, True, "author_posts_1", ["post-pages"]),
    family("home_page_posts", 1, 1, True, "home_page_posts", ["post-pages", "category-pages"]),
    {"type": "table", "table": "public.blog_rating", "problem": "not in publication"},
    {"type": "table", "table": "public.blog_tag", "problem": "no rule"},
    {"type": "summary", "scanned": 52, "families": 9, "uncovered": 4, "uncovered_keys": 22},
]


class AuditTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer()
        cls.redis = RedisServer(extra_args=["--enable-debug-command", "yes"])
        fixtures.blog_schema(cls.pg, marker=False)
        cls.pg.execute("CREATE TABLE blog_tag (id serial PRIMARY KEY, name text)")
        cls.pg.execute("ALTER PUBLICATION walbust ADD TABLE blog_tag")
        cls.tmp = tempfile.mkdtemp(prefix="walbust-audit-")
        cls.extra_rules = os.path.join(cls.tmp, "extra.yaml")
        with open(cls.extra_rules, "w") as f:
            f.write(EXTRA_RULES)
        cls.blog_rules = fixtures.blog_rules_path()

    @classmethod
    def tearDownClass(cls):
        cls.redis.close()
        cls.pg.close()

    def setUp(self):
        self.client = self.redis.client()
        self.client.flushall()
        self.walbusts = []

    def tearDown(self):
        for w in self.walbusts:
            w.close()
        self.client.close()

    def blog_walbust(self, **config):
        w = Walbust(self.pg, self.redis, rules=[self.blog_rules, self.extra_rules], marker=False,
                    config=config or None)
        self.walbusts.append(w)
        return w

    def test_blog_families_are_reported_exactly_with_tables_and_exit_1(self):
        fill_blog_keys(self.client)
        _, lines = audit_json(self.blog_walbust(), expect_rc=1)
        self.assertEqual(lines, BLOG_EXPECTED)

    def test_text_report_lists_uncovered_families_first_with_their_share(self):
        fill_blog_keys(self.client)
        r = self.blog_walbust().run_cli(["audit"])
        self.assertEqual(r.returncode, 1, r.stderr)
        out = r.stdout
        print("\n" + out)
        self.assertIn("52 keys scanned", out)
        self.assertIn("4 of 9 families, 22 keys (42.3%)", out)
        self.assertLess(out.index("user_profile_*"), out.index("session:*"))
        self.assertLess(out.index("bin\\xff\\x00:*"), out.index("Covered families"))
        self.assertLess(out.index("Covered families"), out.index("post_detail_*"))
        self.assertIn("23.1%", out)  # user_profile_*: 12 of 52
        self.assertIn("post-pages, comment-post-page", out)
        self.assertIn("public.blog_tag: published, but no rule reads it", out)
        self.assertIn("public.blog_rating: a rule reads it, but it is not in the publication", out)
        self.assertNotIn("\x00", out)
        self.assertEqual(r.stderr, "")

    def test_every_family_covered_exits_0(self):
        self.client.set("post_detail_1", "x")
        self.client.set("home_page_posts", "x")
        r, lines = audit_json(self.blog_walbust(), expect_rc=0)
        self.assertEqual(lines[-1], {"type": "summary", "scanned": 2, "families": 2,
                                     "uncovered": 0, "uncovered_keys": 0})

    def test_an_empty_database_exits_0(self):
        _, lines = audit_json(self.blog_walbust(), expect_rc=0)
        self.assertEqual(lines[-1]["scanned"], 0)

    def test_configuration_errors_exit_2(self):
        w = self.blog_walbust()
        r = w.run_cli(["audit", "--target", "nope"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--target nope: no such target (configured: default)", r.stderr)
        w.write_config("postgres: {dsn: x}\nredis: {url: 'redis://127.0.0.1:1/0'}\nrules: []\nbogus: 1\n")
        r = w.run_cli(["audit"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("error:", r.stderr)

    def test_with_several_targets_only_the_named_targets_rules_count(self):
        sessions_rules = os.path.join(self.tmp, "sessions.yaml")
        with open(sessions_rules, "w") as f:
            f.write("version: 1\nrules:\n  - name: sessions\n    table: user_session\n"
                    "    targets: [sessions]\n    delete: [\"session:{id}\"]\n")
        self.client.set("post_detail_1", "x")
        self.client.set(f"session:{SESSIONS[0]}", "x")
        w = Walbust(self.pg, self.redis, rules=[self.blog_rules, sessions_rules], marker=False,
                    config={"redis": fixtures.DELETE,
                            "targets": {"pages": {"url": self.redis.url},
                                        "sessions": {"url": self.redis.url}}})
        self.walbusts.append(w)
        r = w.run_cli(["audit"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("2 Redis targets (pages, sessions): name one with --target", r.stderr)
        _, pages = audit_json(w, "--target", "pages", expect_rc=1)
        self.assertEqual([(f["family"], f["covered"]) for f in pages if f["type"] == "family"],
                         [("session:*", False), ("post_detail_*", True)])
        _, sessions = audit_json(w, "--target", "sessions", expect_rc=0)
        self.assertEqual(sessions[0]["rules"], ["post-pages", "comment-post-page"])
        self.assertEqual(sessions[1]["family"], "session:*")
        self.assertEqual(sessions[1]["rules"], ["sessions"])

    def test_a_missing_publication_is_said_and_every_rule_table_reported(self):
        self.client.set("post_detail_1", "x")
        w = self.blog_walbust(postgres={"publication": "nopub"})
        _, lines = audit_json(w, expect_rc=0)
        self.assertEqual([line for line in lines if line["type"] == "table"], [
            {"type": "table", "table": f"public.{t}", "problem": "not in publication"}
            for t in ("blog_category", "blog_comment", "blog_post", "blog_rating")])
        text = w.run_cli(["audit"]).stdout
        self.assertIn("the publication does not exist: walbust setup prints", text)

    def test_an_unreachable_database_is_one_line_and_the_redis_part_goes_on(self):
        self.client.set("post_detail_1", "x")
        w = self.blog_walbust(postgres={"dsn": "host=127.0.0.1 port=1 dbname=x connect_timeout=2"})
        r, lines = audit_json(w, expect_rc=0)
        self.assertEqual([line["type"] for line in lines], ["family", "summary"])
        self.assertEqual(lines[-1]["scanned"], 1)
        self.assertRegex(r.stderr, r"^walbust audit: database not checked: .*\n$")

    def test_an_unreachable_redis_fails_with_exit_1(self):
        w = self.blog_walbust(redis={"url": f"redis://127.0.0.1:{fixtures.free_port()}/0"})
        r = w.run_cli(["audit"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("walbust audit: redis target default:", r.stderr)

    def test_audit_sends_only_read_commands(self):
        fill_blog_keys(self.client)
        monitor = fixtures.RedisMonitor(self.redis)
        try:
            r = self.blog_walbust().run_cli(["audit"])
        finally:
            monitor.stop(self.redis)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("SCAN", monitor.commands)
        self.assertIn("PTTL", monitor.commands)
        self.assertEqual(set(monitor.commands) - READ_ONLY, set(), monitor.commands)
        self.assertEqual(self.client.dbsize(), 52)

    def test_sample_caps_the_scan(self):
        fixtures.fill_keys(self.client, [f"post_detail_{i}" for i in range(5000)])
        r, lines = audit_json(self.blog_walbust(), "--sample", "1200", expect_rc=0)
        self.assertEqual(lines[-1]["scanned"], 1200)
        self.assertEqual(lines[0]["keys"], 1200)
        text = self.blog_walbust().run_cli(["audit", "--sample", "1200"]).stdout
        self.assertIn("stopped at --sample 1200", text)

    def test_a_million_keys_are_audited_in_bounded_memory(self):
        started = time.monotonic()
        self.client.execute_command("DEBUG", "POPULATE", 600000, "user_profile")
        self.client.execute_command("DEBUG", "POPULATE", 400000, "post_detail_")
        # More distinct families than the cap (10000): the rest lands in "(other)".
        fixtures.fill_keys(self.client, [f"fam_{letters(i)}_1" for i in range(20000)])
        total = self.client.dbsize()
        filled = time.monotonic() - started
        w = self.blog_walbust()
        wrapper = ("import resource, subprocess, sys\n"
                   "r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)\n"
                   "sys.stdout.buffer.write(r.stdout)\n"
                   "sys.stderr.write('%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
                   "sys.exit(r.returncode)\n")
        started = time.monotonic()
        r = subprocess.run([sys.executable, "-c", wrapper, w.binary, "audit", "-c", w.config_path,
                            "--format", "json", "--sample", "2000000"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                           env=fixtures.walbust_env())
        seconds = time.monotonic() - started
        self.assertEqual(r.returncode, 1, r.stderr)
        peak_kb = int(r.stderr.strip().splitlines()[-1])
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        summary = lines[-1]
        print(f"\naudit of {total} keys ({summary['families']} families): {seconds:.1f}s, "
              f"peak RSS {peak_kb / 1024:.1f} MB (filling Redis took {filled:.1f}s)")
        self.assertEqual(summary["scanned"], total)
        self.assertEqual(summary["families"], 10001)
        other = [l for l in lines if l.get("family") == "(other)"]
        self.assertEqual(len(other), 1)
        self.assertEqual(other[0]["keys"], total - 1000000 - 9998)
        if not fixtures.binary_is_sanitized(w.binary):
            self.assertLessEqual(peak_kb, 64 * 1024)


class DjangoAuditTest(unittest.TestCase):
    """The Django example's rules: KEY_PREFIX/VERSION, fragments, versioned keys."""

    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer()

    @classmethod
    def tearDownClass(cls):
        cls.redis.close()

    def test_django_keys_are_matched_after_key_format(self):
        client = self.redis.client()
        client.flushall()
        rules = os.path.join(fixtures.SOURCE_DIR, "examples", "django_blog", "rules.yaml")
        for i in (1, 2, 3):
            client.set(f"blog:3:post_detail_{i}", "x", ex=600)
            client.set(f"blog:3:template.cache.sidebar.{md5(f'{i}:')}", "x", ex=600)
            client.set(f"blog:3:article_version_{i}", "1")
            # Bodies cached under a bumped version (an LSN): no rule deletes them.
            client.set(f"blog:2630{i}:article_{i}", "x", ex=86400)
        client.set("blog:3:home_page_posts", "x", ex=600)
        client.set("blog:2:post_detail_1", "x")  # an older VERSION no rule writes
        w = Walbust(None, self.redis, rules=[rules], marker=False,
                    config={"postgres": {"dsn": "host=127.0.0.1 port=1 dbname=x"}})
        try:
            r, lines = audit_json(w, expect_rc=1)
        finally:
            w.close()
        self.assertEqual(lines, [
            family("blog:*:post_detail_*", 4, 1, False, "blog:2:post_detail_1",
                   ["post-pages", "comments", "category-pages", "author-names"]),
            family("blog:*:article_*", 3, 0, False, "blog:26301:article_1"),
            family("blog:*:article_version_*", 3, 3, True, "blog:3:article_version_1",
                   ["post-article"]),
            family("blog:*:template.cache.sidebar.*", 3, 0, True,
                   "blog:3:template.cache.sidebar." + min(md5(f"{i}:") for i in (1, 2, 3)),
                   ["post-pages", "author-names"]),
            family("blog:*:home_page_posts", 1, 0, True, "blog:3:home_page_posts",
                   ["post-pages", "category-pages", "author-names"]),
            {"type": "summary", "scanned": 14, "families": 5, "uncovered": 2, "uncovered_keys": 7},
        ])
        self.assertIn("database not checked", r.stderr)


class ClusterAuditTest(unittest.TestCase):
    def test_every_master_of_a_cluster_is_scanned(self):
        with RedisCluster(masters=3, replicas=0) as cluster:
            keys = [f"post_detail_{i}" for i in range(300)] + [f"user_profile_{i}" for i in range(100)]
            cluster.set_keys(keys)
            self.assertEqual(len({cluster.master_of_slot_cached(key_slot(k)) for k in keys}), 3)
            w = Walbust(None, None, rules=[fixtures.blog_rules_path()], marker=False,
                        config={"postgres": {"dsn": "host=127.0.0.1 port=1 dbname=x"},
                                "redis": fixtures.DELETE,
                                "targets": {"cache": {"url": "redis://127.0.0.1:6379/0",
                                                      "cluster": True, "nodes": cluster.seeds}}})
            try:
                r, lines = audit_json(w, expect_rc=1)
                self.assertIn("(3 masters)", w.run_cli(["audit"]).stdout)
                _, sampled = audit_json(w, "--sample", "150")
                self.assertEqual(sampled[-1]["scanned"], 150)
            finally:
                w.close()
            self.assertEqual(lines, [
                family("user_profile_*", 100, 100, False, "user_profile_0"),
                family("post_detail_*", 300, 300, True, "post_detail_0",
                       ["post-pages", "comment-post-page"]),
                {"type": "summary", "scanned": 400, "families": 2, "uncovered": 1,
                 "uncovered_keys": 100},
            ])


if __name__ == "__main__":
    unittest.main()
