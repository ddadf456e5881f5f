"""The rules language end to end: real SQL through real PostgreSQL and Redis, and the
exact set of keys walbust deleted (README "Writing rules").

Every test fills Redis with every key the rules could produce for the rows involved plus
unrelated keys, makes a change, waits until walbust has handled it (a marker row), and
compares what is left with what must be left: nothing missing, nothing extra.
"""

import hashlib
import os
import subprocess
import tempfile
import unittest

import fixtures
from fixtures import PostgresServer, RedisServer, Walbust

TIMEOUT = 30

RULES = """version: 1
rules:
  - name: post-pages
    table: blog_post
    ignore_changes: [view_count]
    delete:
      - "post_detail_{id}"
      - "category_posts_{category_id}"
      - "post_by_slug_{slug}"
    delete_pattern:
      - "user:{author_id}:*"
    bump_version:
      - "article_version_{id}"
    fragment:
      - {name: sidebar, vary_on: ["{author_id}"]}
  - name: comment-pages
    table: blog_comment
    delete: ["post_detail_{post_id}", "home_page_posts"]
  - name: toast
    table: blob
    delete: ["blob_{id}_{body|md5}", "blob_title_{title}"]
"""


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def sidebar(author):
    return "template.cache.sidebar." + md5(f"{author}:")


class RulesEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer()
        cls.redis = RedisServer()
        fixtures.blog_schema(cls.pg, marker=True)
        cls.pg.execute("""
            CREATE TABLE blob (id int PRIMARY KEY, title text, body text);
            ALTER TABLE blob REPLICA IDENTITY FULL;
            CREATE TABLE blob_default (id int PRIMARY KEY, title text, body text);
            ALTER PUBLICATION walbust ADD TABLE blob, blob_default;
        """)
        cls.tmp = tempfile.mkdtemp(prefix="walbust-rules-e2e-")
        rules = os.path.join(cls.tmp, "rules.yaml")
        with open(rules, "w") as f:
            f.write(RULES + """  - name: toast-default-identity
    table: blob_default
    delete: ["blobd_{id}_{body|md5}"]
""")
        cls.w = Walbust(cls.pg, cls.redis, rules=[rules])
        cls.w.start()
        cls.w.wait_streaming(timeout=TIMEOUT)
        cls.r = cls.redis.client()

    @classmethod
    def tearDownClass(cls):
        cls.w.close()
        cls.redis.close()
        cls.pg.close()

    def setUp(self):
        self.r.flushdb()
        for table in ("blog_comment", "blog_post", "blog_category"):
            self.pg.execute(f"DELETE FROM {table}")
        self.w.sync()
        self.pg.execute("INSERT INTO blog_category (id, name, slug) VALUES (1, 'a', 'a'), (2, 'b', 'b'), (3, 'c', 'c')")
        self.pg.execute("INSERT INTO blog_post (id, title, slug, author_id, category_id) VALUES "
                        "(1, 't1', 's1', 10, 1), (2, 't2', 's2', 20, 1), (3, 't3', 's3', 30, 2), "
                        "(4, 't4', 's4', 40, 3)")
        self.w.sync()

    def universe(self):
        keys = {"home_page_posts", "unrelated", "session:x"}
        for i in range(1, 6):
            keys |= {f"post_detail_{i}", f"category_posts_{i}", f"post_by_slug_s{i}", f"article_version_{i}"}
        for a in (10, 20, 30, 40):
            keys |= {f"user:{a}:profile", f"user:{a}:feed:2", sidebar(a)}
        return keys

    def check(self, statement_or_fn, gone, bumped=()):
        keys = self.universe() | set(gone)
        fixtures.fill_keys(self.r, keys, value="0")
        if callable(statement_or_fn):
            statement_or_fn()
        else:
            self.pg.execute(statement_or_fn)
        self.w.sync()
        present = fixtures.existing_keys(self.r, keys)
        bumped = set(bumped)
        self.assertEqual(sorted(keys - present), sorted(set(gone)), "deleted keys")
        for k in bumped:
            value = self.r.get(k)
            self.assertTrue(value.isdigit() and int(value) > 0, (k, value))
        for k in present - bumped:
            self.assertEqual(self.r.get(k), b"0", k)

    def test_update_moving_rows_between_groups(self):
        # Posts 1 and 2 move from category 1 to 3: both pages of each, their authors'
        # patterns and fragments, and the version keys bump to the commit LSN.
        self.check("UPDATE blog_post SET category_id = 3 WHERE category_id = 1",
                   gone={"post_detail_1", "post_detail_2", "category_posts_1", "category_posts_3",
                         "post_by_slug_s1", "post_by_slug_s2", "user:10:profile", "user:10:feed:2",
                         "user:20:profile", "user:20:feed:2", sidebar(10), sidebar(20)},
                   bumped={"article_version_1", "article_version_2"})
        v1, v2 = self.r.get("article_version_1"), self.r.get("article_version_2")
        self.assertEqual(v1, v2)  # one transaction, one commit LSN
        commit_lsn = int(v1)
        self.assertLessEqual(commit_lsn, int(self.pg.current_wal_lsn()))

    def test_view_count_is_ignored_and_author_change_clears_both(self):
        self.check("UPDATE blog_post SET view_count = view_count + 1", gone=set())
        self.check("UPDATE blog_post SET author_id = 20 WHERE id = 1",
                   gone={"post_detail_1", "category_posts_1", "post_by_slug_s1", "user:10:profile",
                         "user:10:feed:2", "user:20:profile", "user:20:feed:2", sidebar(10), sidebar(20)},
                   bumped={"article_version_1"})

    def test_truncate_becomes_patterns(self):
        # Comments of posts 1 and 3 exist; TRUNCATE sends no rows, so post_detail_{post_id}
        # becomes post_detail_* and every post page goes; the constant key goes directly.
        self.pg.execute("INSERT INTO blog_comment (post_id, author_name, body) VALUES (1, 'a', 'b'), (3, 'c', 'd')")
        self.w.sync()
        self.check("TRUNCATE blog_comment",
                   gone={f"post_detail_{i}" for i in range(1, 6)} | {"home_page_posts"})

    def test_cascade_and_delete(self):
        self.pg.execute("INSERT INTO blog_comment (post_id, author_name, body) VALUES (4, 'a', 'b')")
        self.w.sync()
        self.check("DELETE FROM blog_category WHERE id = 3",
                   gone={"post_detail_4", "category_posts_3", "post_by_slug_s4", "user:40:profile",
                         "user:40:feed:2", sidebar(40), "home_page_posts"},
                   bumped={"article_version_4"})

    def test_glob_characters_in_values_never_widen_a_pattern(self):
        # author_id is an int here, so use the slug: a pattern rule on a text column.
        self.pg.execute("UPDATE blog_post SET slug = 'a*[b]?' WHERE id = 1")
        self.w.sync()
        self.check("UPDATE blog_post SET title = 'x' WHERE id = 1",
                   gone={"post_detail_1", "category_posts_1", "post_by_slug_a*[b]?", "user:10:profile",
                         "user:10:feed:2", sidebar(10)},
                   bumped={"article_version_1"})

    def test_toasted_value_from_the_old_row(self):
        # ~64 kB of incompressible text is stored out of line (TOAST). An UPDATE of another
        # column does not resend it ('u'); with REPLICA IDENTITY FULL the old row has it.
        body = self.pg.query("SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 2000)")[0][0]
        self.pg.execute("INSERT INTO blob VALUES (1, 'first', %s)", (body,))
        self.pg.execute("INSERT INTO blob_default VALUES (1, 'first', %s)", (body,))
        self.w.sync()
        keys = {f"blob_1_{md5(body)}", "blob_title_first", "blob_title_second", f"blobd_1_{md5(body)}"}
        fixtures.fill_keys(self.r, keys)
        self.pg.execute("UPDATE blob SET title = 'second' WHERE id = 1")
        self.pg.execute("UPDATE blob_default SET title = 'second' WHERE id = 1")
        self.w.sync()
        present = fixtures.existing_keys(self.r, keys)
        # FULL identity: rendered from the old row's value, one key for both images.
        self.assertNotIn(f"blob_1_{md5(body)}", present)
        self.assertNotIn("blob_title_first", present)
        self.assertNotIn("blob_title_second", present)
        # Default identity: the value was never sent; the key is skipped and reported.
        self.assertIn(f"blobd_1_{md5(body)}", present)
        self.w.wait_for_log(r"rule toast-default-identity: a key could not be rendered .*unchanged_toast, column body")

    def test_dropped_column_mid_stream(self):
        # The rules name slug; after DROP COLUMN the next changes carry a relation without
        # it: that key is skipped (and warned about), every other key still goes.
        self.pg.execute("ALTER TABLE blog_post DROP COLUMN slug")
        try:
            self.check("UPDATE blog_post SET category_id = 2 WHERE id = 4",
                       gone={"post_detail_4", "category_posts_3", "category_posts_2", "user:40:profile",
                             "user:40:feed:2", sidebar(40)},
                       bumped={"article_version_4"})
            self.w.wait_for_log(r"rule post-pages: a key could not be rendered .*unknown_column, column slug")
            self.assertTrue(self.w.running())
        finally:
            self.pg.execute("ALTER TABLE blog_post ADD COLUMN slug text NOT NULL DEFAULT ''")
            self.pg.execute("UPDATE blog_post SET slug = 's' || id")


if __name__ == "__main__":
    unittest.main()


ORDER_RULES = """version: 1
rules:
  - name: comment-pages
    table: blog_comment
    delete: ["post_detail_{post_id}"]
  - name: category-pages
    table: blog_post
    delete: ["category_posts_{category_id}"]
"""


class PatternOrder(unittest.TestCase):
    """A pattern (here from a TRUNCATE) and a later transaction's delete in one batch: the
    pattern's keys go first, so no reader sees the later invalidation before the earlier
    one. Both transactions are committed while walbust is stopped, so they arrive together
    and form one batch; Redis's MONITOR records the order of the commands."""

    def setUp(self):
        self.pg = PostgresServer()
        self.redis = RedisServer()
        fixtures.blog_schema(self.pg, marker=True)
        self.tmp = tempfile.mkdtemp(prefix="walbust-order-")
        rules = os.path.join(self.tmp, "rules.yaml")
        with open(rules, "w") as f:
            f.write(ORDER_RULES)
        self.w = Walbust(self.pg, self.redis, rules=[rules], slot="order")
        self.monitor = None

    def tearDown(self):
        if self.monitor is not None and self.monitor.poll() is None:
            self.monitor.kill()
            self.monitor.wait()
        self.w.close()
        self.redis.close()
        self.pg.close()

    def test_pattern_is_scanned_before_a_later_transactions_delete(self):
        self.w.start()
        self.w.wait_streaming(timeout=TIMEOUT)
        self.pg.execute("INSERT INTO blog_category (id, name, slug) VALUES (3, 'c', 'c')")
        self.pg.execute("INSERT INTO blog_post (id, title, slug, author_id, category_id) VALUES (4, 't', 's', 1, 3)")
        self.pg.execute("INSERT INTO blog_comment (post_id, author_name, body) VALUES (4, 'a', 'b')")
        self.w.sync()
        self.assertEqual(self.w.stop(), 0)

        r = self.redis.client()
        fixtures.fill_keys(r, {"post_detail_4", "post_detail_9", "category_posts_3"}, value="0")
        self.pg.execute("TRUNCATE blog_comment")  # -> pattern post_detail_*
        self.pg.execute("UPDATE blog_post SET title = 'u' WHERE id = 4")  # -> category_posts_3
        out = open(os.path.join(self.tmp, "monitor.txt"), "wb")
        self.monitor = subprocess.Popen(["redis-cli", "-p", str(self.redis.port), "monitor"], stdout=out,
                                        stderr=subprocess.STDOUT)
        # redis-cli prints OK once MONITOR is attached.
        fixtures.wait_for(lambda: os.path.getsize(out.name) > 0, TIMEOUT, message="MONITOR attached")
        self.w.start()
        self.w.sync()
        self.monitor.terminate()
        self.monitor.wait()
        out.close()
        self.assertEqual(fixtures.existing_keys(r, {"post_detail_4", "post_detail_9", "category_posts_3"}), set())
        with open(out.name, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        scan = next((i for i, l in enumerate(lines) if '"SCAN"' in l and '"post_detail_*"' in l), None)
        unlink = next((i for i, l in enumerate(lines) if '"UNLINK"' in l and '"category_posts_3"' in l), None)
        self.assertIsNotNone(scan, "no SCAN for the TRUNCATE's pattern:\n" + "\n".join(lines[-30:]))
        self.assertIsNotNone(unlink, "no UNLINK of category_posts_3:\n" + "\n".join(lines[-30:]))
        self.assertLess(scan, unlink, "the later transaction's delete reached Redis before the pattern's scan")
