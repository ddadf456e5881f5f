"""The Django blog example (examples/django_blog) against real PostgreSQL, Redis and walbust.

The blog caches with Django's low-level API, a {% cache %} fragment and a versioned key,
and has no signal handlers. Each test fills the cache through Django's test client, changes
data one way (Model.save(), QuerySet.update(), bulk_create(), raw SQL, psql as another
service), and then checks through Django's own cache API that exactly the entries built
from the changed rows are gone and every other entry remains. Reading through Django's
API is the proof that rules.yaml's `key_format: django` and `fragment` keys are the keys
Django and django-redis really write.

Django runs in this process against committed data: django.test.TestCase would wrap
every test in a transaction that never commits, and walbust only sees commits.
"""

import json
import os
import subprocess
import sys
import time
import unittest
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("WALBUST_SOURCE_DIR", Path(__file__).resolve().parents[2]))
WALBUST_BIN = Path(os.environ.get("WALBUST_BIN", SOURCE_DIR / "build" / "walbust"))
EXAMPLE_DIR = SOURCE_DIR / "examples" / "django_blog"
sys.path.insert(0, str(EXAMPLE_DIR))

import devservers  # noqa: E402  (examples/django_blog/devservers.py)

WAIT_SECONDS = 10


class DjangoBlogTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = devservers.Stack(keep=os.environ.get("WALBUST_KEEP_TMP") == "1")
        try:
            cls.stack.start()
            os.environ.update(cls.stack.django_env())
            os.environ["DJANGO_SETTINGS_MODULE"] = "blogsite.settings"
            import django

            django.setup()
            from django.core.management import call_command
            from django.test.utils import setup_test_environment

            setup_test_environment()  # lets the test client's "testserver" host in
            # The migrations also set REPLICA IDENTITY FULL and create the publication,
            # which must exist before walbust creates its slot below.
            call_command("migrate", verbosity=0)
            cls.seed()
            cls.walbust = cls.stack.start_walbust(WALBUST_BIN, EXAMPLE_DIR / "rules.yaml")
        except BaseException:
            cls.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.close()

    @classmethod
    def close(cls):
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        cls.stack.stop()

    @classmethod
    def seed(cls):
        from blog.models import Category, Post
        from django.contrib.auth.models import User

        cls.users = {name: User.objects.create_user(name) for name in ["alice", "bob", "carol", "dave", "sentinel"]}
        cls.categories = {
            slug: Category.objects.create(name=slug.title(), slug=slug)
            for slug in ["news", "tech", "travel", "food", "misc", "sentinel"]
        }
        cls.posts = {}
        for slug, author, category in [
            ("saved", "alice", "news"),
            ("steady", "alice", "tech"),
            ("bulk-1", "bob", "travel"),
            ("bulk-2", "bob", "travel"),
            ("raw", "carol", "food"),
            ("merged-1", "dave", "misc"),
            ("merged-2", "dave", "misc"),
            ("other", "carol", "tech"),
        ]:
            cls.posts[slug] = Post.objects.create(
                title=slug.replace("-", " ").title(), slug=slug, content=f"The {slug} post.",
                author=cls.users[author], category=cls.categories[category])
        # Barrier post: a comment on it deletes only post_detail_<sentinel>, see applied().
        cls.sentinel = Post.objects.create(title="Sentinel", slug="sentinel", content="-",
                                           author=cls.users["sentinel"], category=cls.categories["sentinel"])

    # --- the cache, seen through Django ------------------------------------------------

    def cached_entries(self):
        """Every key the views can have written, mapped to its value through Django's API.

        Fragment keys come from Django's make_template_fragment_key, the function
        {% cache %} uses; article versions are read as the view reads them.
        """
        from blog.models import Category, Post
        from django.contrib.auth.models import User
        from django.core.cache import cache
        from django.core.cache.utils import make_template_fragment_key

        keys = ["home_page_posts"]
        for pk in Post.objects.exclude(pk=self.sentinel.pk).values_list("pk", flat=True):
            keys += [f"post_detail_{pk}", f"article_version_{pk}"]
        keys += [f"category_posts_{pk}" for pk in Category.objects.values_list("pk", flat=True)]
        for pk in User.objects.values_list("pk", flat=True):
            keys.append(f"author_posts_{pk}")
            if pk != self.sentinel.author_id:  # its only post's page is never visited
                keys.append(make_template_fragment_key("sidebar", [pk]))
        return {key: cache.get(key) for key in keys}

    def fill_cache(self):
        """Visit every page with an empty cache, as readers would."""
        from blog.models import Category, Post
        from django.contrib.auth.models import User
        from django.core.cache import cache
        from django.test import Client

        cache.clear()
        client = Client()
        urls = ["/"]
        urls += [f"/post/{pk}/" for pk in Post.objects.exclude(pk=self.sentinel.pk).values_list("pk", flat=True)]
        urls += [f"/category/{pk}/" for pk in Category.objects.values_list("pk", flat=True)]
        urls += [f"/author/{pk}/" for pk in User.objects.values_list("pk", flat=True)]
        for url in urls:
            self.assertEqual(client.get(url).status_code, 200, url)
        # The detail views counted their views (UPDATE view_count) while caching: walbust
        # has seen those updates once applied() returns, and must have deleted nothing.
        self.applied()
        entries = self.cached_entries()
        self.assertEqual({k for k, v in entries.items() if v is None}, set(), "cache not fully filled")
        return entries

    def applied(self):
        """Returns once walbust has processed every transaction committed before the call.

        walbust applies transactions in commit order, so once the delete caused by a
        comment on the sentinel post arrived, so did the deletes of everything before it.
        """
        from blog.models import Comment
        from django.core.cache import cache

        marker = f"post_detail_{self.sentinel.pk}"
        cache.set(marker, "barrier")
        Comment.objects.create(post=self.sentinel, author_name="barrier", body="-")
        self.wait_for(lambda: cache.get(marker) is None, "walbust to apply the barrier comment")

    def wait_for(self, predicate, what):
        deadline = time.monotonic() + WAIT_SECONDS
        while not predicate():
            if not self.walbust.running():
                self.fail(f"walbust exited while waiting for {what}:\n{self.walbust.log()[-3000:]}")
            if time.monotonic() > deadline:
                self.fail(f"timed out after {WAIT_SECONDS}s waiting for {what}")
            time.sleep(0.02)

    def assert_invalidated(self, before, gone=(), bumped=()):
        """Exactly `gone` disappeared and exactly the `bumped` versions changed."""
        from django.core.cache import cache

        gone, bumped = set(gone), set(bumped)
        self.wait_for(lambda: all(cache.get(k) is None for k in gone), f"walbust to delete {sorted(gone)}")
        self.applied()
        after = self.cached_entries()
        versions = {k for k in before if k.startswith("article_version_")}
        self.assertEqual({k for k in before if k not in versions and after[k] is None}, gone)
        changed = {k for k in versions if after[k] != before[k]}
        self.assertEqual(changed, bumped)
        for key in bumped:
            # bump_version writes the commit LSN as an integer: django-redis reads it back as
            # an int, and the view uses it as the Django cache version of the article.
            self.assertIsInstance(after[key], int)
            self.assertGreater(after[key], before[key])

    @staticmethod
    def page_keys(post_id, category_id, author_id):
        """The entries rule "post-pages" clears for one image (old or new) of a post row."""
        from django.core.cache.utils import make_template_fragment_key

        return {f"post_detail_{post_id}", "home_page_posts", f"category_posts_{category_id}",
                f"author_posts_{author_id}", make_template_fragment_key("sidebar", [author_id])}

    def rows(self, **filters):
        from blog.models import Post

        return list(Post.objects.filter(**filters).values_list("id", "category_id", "author_id"))

    # --- the tests -----------------------------------------------------------------------

    def test_migrations_prepare_replication(self):
        tables = ["blog_category", "blog_post", "blog_comment", "auth_user"]
        identities = self.stack.psql(
            "SELECT string_agg(relname || '=' || relreplident::text, ',' ORDER BY relname) FROM pg_class "
            f"WHERE relname IN ({', '.join(repr(t) for t in tables)})", dbname="blog")
        self.assertEqual(identities, ",".join(f"{t}=f" for t in sorted(tables)))
        published = self.stack.psql(
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables "
            "WHERE pubname = 'walbust'", dbname="blog")
        self.assertEqual(published, ",".join(sorted(tables)))

    def test_rule_cases(self):
        result = subprocess.run(
            [str(WALBUST_BIN), "test", "-c", self.walbust.config_path, str(EXAMPLE_DIR / "rules.test.yaml")],
            capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn(" 0 failed", result.stdout)

    def test_a_model_save_moving_and_editing_a_post(self):
        from blog.models import Post
        from django.test import Client

        before = self.fill_cache()
        post = Post.objects.get(pk=self.posts["saved"].pk)
        old = self.rows(pk=post.pk)
        post.category = self.categories["tech"]
        post.content = "Rewritten."
        post.save()
        gone = set()
        for row in old + self.rows(pk=post.pk):
            gone |= self.page_keys(*row)
        self.assertIn(f"category_posts_{self.categories['news'].pk}", gone)  # the category it left
        self.assert_invalidated(before, gone=gone, bumped={f"article_version_{post.pk}"})
        # The next reader gets the new article body, under the new version.
        self.assertIn("Rewritten.", Client().get(f"/post/{post.pk}/").content.decode())

    def test_b_queryset_update_sends_no_signal(self):
        from blog.models import Post

        before = self.fill_cache()
        rows = self.rows(author=self.users["bob"])
        self.assertEqual(Post.objects.filter(author=self.users["bob"]).update(is_featured=True), len(rows))
        gone = set().union(*(self.page_keys(*row) for row in rows))
        # Featuring changes neither title nor content: the article bodies keep their version.
        self.assert_invalidated(before, gone=gone)

    def test_c_bulk_create_sends_no_signal(self):
        from blog.models import Comment, Post

        before = self.fill_cache()
        targets = [self.posts["steady"], self.posts["other"]]
        Comment.objects.bulk_create(
            [Comment(post=p, author_name="importer", body=f"Imported {i}") for i in range(3) for p in targets])
        self.assert_invalidated(before, gone={f"post_detail_{p.pk}" for p in targets})

        before = self.fill_cache()
        carol, news = self.users["carol"], self.categories["news"]
        created = Post.objects.bulk_create(
            [Post(title=f"Bulk {i}", slug=f"bulk-new-{i}", content="-", author=carol, category=news) for i in range(2)])
        # Nothing was cached for the new posts yet; the lists that now show them are cleared.
        gone = self.page_keys(created[0].pk, news.pk, carol.pk) - {f"post_detail_{created[0].pk}"}
        self.assert_invalidated(before, gone=gone)

    def test_d_raw_sql_through_django_connection(self):
        from django.core.cache import cache
        from django.db import connection

        before = self.fill_cache()
        post = self.posts["raw"]
        (row,) = self.rows(pk=post.pk)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM blog_comment WHERE post_id = %s", [post.pk])
            cursor.execute("DELETE FROM blog_post WHERE id = %s", [post.pk])
        # The deleted post's keys are rendered from the previous row (REPLICA IDENTITY FULL).
        # cached_entries() no longer lists the post's own two keys: check them separately.
        detail, version = f"post_detail_{post.pk}", f"article_version_{post.pk}"
        old_version = before.pop(version)
        del before[detail]
        self.assert_invalidated(before, gone=self.page_keys(*row) - {detail})
        self.assertIsNone(cache.get(detail))
        self.assertGreater(cache.get(version), old_version)  # bumped on delete too

    def test_e_psql_from_another_service(self):
        misc, food = self.categories["misc"], self.categories["food"]
        before = self.fill_cache()
        old = self.rows(category=misc)
        self.assertTrue(old)
        # A maintenance job, not Django, merges the "misc" category into "food".
        self.stack.psql(f"UPDATE blog_post SET category_id = {food.pk} WHERE category_id = {misc.pk}",
                           dbname="blog", user="blog")
        gone = set()
        for row in old + self.rows(pk__in=[r[0] for r in old]):
            gone |= self.page_keys(*row)
        self.assertIn(f"category_posts_{misc.pk}", gone)
        self.assert_invalidated(before, gone=gone)

    def test_f_counting_a_view_invalidates_nothing(self):
        from blog.models import Post
        from django.core.cache import cache
        from django.test import Client

        before = self.fill_cache()
        post = self.posts["steady"]
        views = Post.objects.get(pk=post.pk).view_count
        cache.delete(f"post_detail_{post.pk}")
        Client().get(f"/post/{post.pk}/")  # a miss: caches the page, then counts the view
        self.assertEqual(Post.objects.get(pk=post.pk).view_count, views + 1)
        self.assert_invalidated(before, gone=())

    def test_g_renaming_a_category_clears_all_post_pages(self):
        from blog.models import Post

        before = self.fill_cache()
        travel = self.categories["travel"]
        travel.name = "Journeys"
        travel.save()
        gone = {f"post_detail_{pk}" for pk in Post.objects.exclude(pk=self.sentinel.pk).values_list("pk", flat=True)}
        gone |= {f"category_posts_{travel.pk}", "home_page_posts"}
        self.assert_invalidated(before, gone=gone)

    def test_h_author_changes(self):
        from blog.models import Post
        from django.contrib.auth.models import User
        from django.core.cache.utils import make_template_fragment_key
        from django.utils import timezone

        before = self.fill_cache()
        dave = self.users["dave"]
        User.objects.filter(pk=dave.pk).update(last_login=timezone.now())  # every login does this
        self.assert_invalidated(before, gone=())

        User.objects.filter(pk=dave.pk).update(username="david")
        gone = {f"post_detail_{pk}" for pk in Post.objects.exclude(pk=self.sentinel.pk).values_list("pk", flat=True)}
        gone |= {f"author_posts_{dave.pk}", "home_page_posts", make_template_fragment_key("sidebar", [dave.pk])}
        self.assert_invalidated(before, gone=gone)

    def test_i_audit_finds_only_the_versioned_article_bodies_uncovered(self):
        """`walbust audit` on the cache the views really filled: every family the blog writes
        is covered by a rule, except the versioned article bodies, which need none."""
        self.fill_cache()
        result = self.walbust.run_cli(["audit", "--format", "json"])
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        families = {f["family"]: f for f in lines if f["type"] == "family"}
        uncovered = {name for name, f in families.items() if not f["covered"]}
        self.assertEqual(uncovered, {"blog:*:article_*"}, result.stdout)
        self.assertEqual(families["blog:*:article_*"]["no_ttl"], 0)
        for name, rule in [("blog:*:post_detail_*", "post-pages"),
                           ("blog:*:home_page_posts", "post-pages"),
                           ("blog:*:category_posts_*", "post-pages"),
                           ("blog:*:author_posts_*", "author-names"),
                           ("blog:*:template.cache.sidebar.*", "post-pages"),
                           ("blog:*:article_version_*", "post-article")]:
            self.assertIn(rule, families[name]["rules"], name)
        self.assertEqual([line for line in lines if line["type"] == "table"], [])
        self.assertEqual(lines[-1]["type"], "summary")
        self.assertEqual(lines[-1]["uncovered"], 1)


if __name__ == "__main__":
    unittest.main()
