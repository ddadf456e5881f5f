#!/usr/bin/python3
"""Runs the blog with throwaway PostgreSQL and Redis servers and walbust next to it.

    demo.py            a scripted walkthrough: fill the cache, write data five ways, show
                       which cache entries walbust deleted
    demo.py --serve    the same setup, then Django's dev server on http://127.0.0.1:8000/
                       (admin: admin/admin) until Ctrl-C

run.sh installs the dependencies and builds walbust first; use it from a fresh clone.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import devservers  # noqa: E402

sys.path.insert(0, str(HERE.parent))
import invalidation_subscriber  # noqa: E402  (examples/invalidation_subscriber.py)

# What the rules publish on this channel reaches every process's in-process cache.
CHANNEL = "blog-invalidation"
events = []  # the events the in-process listener received during the current step

# Django 3.2 (Debian 12) imports modules that Python 3.11 deprecates; the noise hides the demo.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def setup_django(stack):
    os.environ.update(stack.django_env())
    os.environ["DJANGO_SETTINGS_MODULE"] = "blogsite.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the walkthrough uses Django's test client
    call_command("migrate", verbosity=0)


def seed():
    from blog.models import Category, Post
    from django.contrib.auth.models import User

    User.objects.create_superuser("admin", "admin@example.com", "admin")
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    news = Category.objects.create(name="News", slug="news")
    tech = Category.objects.create(name="Tech", slug="tech")
    travel = Category.objects.create(name="Travel", slug="travel")
    for title, author, category in [
        ("Hello, walbust", alice, news),
        ("Signals miss updates", alice, tech),
        ("A week in Lisbon", bob, travel),
        ("Replication slots explained", bob, tech),
    ]:
        slug = title.lower().replace(",", "").replace(" ", "-")
        Post.objects.create(title=title, slug=slug, content=f"{title}.\n\nSome text.", author=author, category=category)


def cache_entries():
    """Every key the views may have cached, mapped to its value, read through Django."""
    from blog.models import Category, Post
    from django.contrib.auth.models import User
    from django.core.cache import cache
    from django.core.cache.utils import make_template_fragment_key

    keys = {"home_page_posts": "home_page_posts"}
    for pk in Post.objects.values_list("pk", flat=True):
        keys[f"post_detail_{pk}"] = f"post_detail_{pk}"
        keys[f"article_version_{pk}"] = f"article_version_{pk}"
    for pk in Category.objects.values_list("pk", flat=True):
        keys[f"category_posts_{pk}"] = f"category_posts_{pk}"
    for pk in User.objects.values_list("pk", flat=True):
        keys[f"author_posts_{pk}"] = f"author_posts_{pk}"
        keys[f"sidebar fragment of author {pk}"] = make_template_fragment_key("sidebar", [pk])
    return {label: (cache.make_key(key), cache.get(key)) for label, key in keys.items()}


def fill_cache():
    from blog.models import Category, Post
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    urls = ["/"] + [p.get_absolute_url() for p in Post.objects.all()]
    urls += [c.get_absolute_url() for c in Category.objects.all()]
    urls += [f"/author/{pk}/" for pk in User.objects.values_list("pk", flat=True)]
    for url in urls:
        client.get(url)
    time.sleep(0.3)  # let walbust see (and ignore) the view_count updates of these misses


def step(title, change, walbust):
    from django.core.cache import cache

    cache.clear()
    fill_cache()
    before = cache_entries()
    events.clear()
    print(f"\n== {title}")
    started = time.monotonic()
    change()
    # walbust deletes within milliseconds; poll for the first difference, then settle.
    while cache_entries() == before and time.monotonic() - started < 2:
        time.sleep(0.005)
    elapsed = (time.monotonic() - started) * 1000
    time.sleep(0.2)
    after = cache_entries()
    if not walbust.running():
        sys.exit(f"walbust exited:\n{walbust.log()[-3000:]}")
    gone = [f"{label} ({key})" for label, (key, value) in before.items()
            if value is not None and label in after and after[label][1] is None and not label.startswith("article_version")]
    bumped = [f"{label}: {before[label][1]} -> {after[label][1]}" for label in before
              if label.startswith("article_version") and label in after and before[label][1] != after[label][1]]
    kept = sum(1 for label, (_, value) in after.items() if value is not None)
    if gone or bumped:
        print(f"   walbust invalidated within {elapsed:.0f} ms:")
        for line in gone:
            print(f"     deleted  {line}")
        for line in bumped:
            print(f"     bumped   {line}")
    else:
        print("   nothing invalidated, as intended")
    print(f"   {kept} cache entries still valid")
    for event in list(events):
        print(f"   in-process caches told on {CHANNEL} (lsn {event['lsn']}): {', '.join(event['keys'])}")


def walkthrough(stack, walbust):
    from blog.models import Category, Comment, Post
    from django.db import connection
    from django.db.models import F

    tech = Category.objects.get(slug="tech")
    hello = Post.objects.get(slug="hello-walbust")

    def save():
        post = Post.objects.get(pk=hello.pk)
        post.category = tech
        post.content = "Rewritten with walbust."
        post.save()

    step("Model.save(): move 'Hello, walbust' from News to Tech and edit it", save, walbust)
    step("QuerySet.update(): feature bob's posts (no post_save is sent)",
         lambda: Post.objects.filter(author__username="bob").update(is_featured=True), walbust)
    step("bulk_create(): import two comments (no post_save is sent)",
         lambda: Comment.objects.bulk_create([Comment(post=hello, author_name=n, body="Nice") for n in ("ann", "ben")]),
         walbust)

    def raw_sql():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE blog_post SET title = upper(title) WHERE category_id = %s", [tech.pk])

    step("raw SQL via connection.cursor(): upper-case the titles in Tech", raw_sql, walbust)
    step("psql, as another service would: move Travel's posts to News",
         lambda: stack.psql("UPDATE blog_post SET category_id = (SELECT id FROM blog_category WHERE slug = 'news') "
                               "WHERE category_id = (SELECT id FROM blog_category WHERE slug = 'travel')",
                               dbname=stack.DB, user=stack.USER), walbust)
    step("view counter: UPDATE view_count only (ignore_changes)",
         lambda: Post.objects.filter(pk=hello.pk).update(view_count=F("view_count") + 1), walbust)
    audit(walbust)


def audit(walbust):
    """Which cached families would no rule invalidate? Run before removing signals."""
    fill_cache()
    result = walbust.run_cli(["audit"])
    print(f"\n== walbust audit (exit {result.returncode}): the cache's key families against the rules")
    print("\n".join(f"   {line}" if line else "" for line in result.stdout.strip().splitlines()))
    if result.stderr.strip():
        print("   " + result.stderr.strip())
    print("   Article bodies are versioned: bump_version moves article_version_<id>, an old body is never\n"
          "   read again and expires with its 24 h TTL, so blog:*:article_* needs no rule.")


def serve(stack):
    env = dict(os.environ, **stack.django_env())
    print("\nDjango dev server: http://127.0.0.1:8000/  (admin: http://127.0.0.1:8000/admin/, admin/admin)")
    print("Change data any way you like while pages are cached, for example:")
    print(f"  psql -h 127.0.0.1 -p {stack.pg.port} -U {stack.USER} {stack.DB} "
          "-c \"UPDATE blog_post SET title = 'Edited by psql' WHERE id = 1\"")
    print(f"  redis-cli -p {stack.redis.port} --scan --pattern 'blog:*'")
    print(f"walbust's log: {stack.walbust.logfile}\nCtrl-C stops everything.\n")
    server = subprocess.Popen([sys.executable, str(HERE / "manage.py"), "runserver", "--noreload", "127.0.0.1:8000"],
                              env=env, cwd=HERE)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="run Django's dev server instead of the walkthrough")
    parser.add_argument("--walbust", default=os.environ.get("WALBUST_BIN", ROOT / "build" / "walbust"),
                        help="walbust binary (default: build/walbust)")
    args = parser.parse_args()
    # Stopped by SIGTERM (systemd, kill), still stop the servers and remove their files.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    stack = devservers.Stack()
    try:
        stack.start()
        print(f"PostgreSQL on 127.0.0.1:{stack.pg.port}, Redis on 127.0.0.1:{stack.redis.port}, files in {stack.workdir}")
        setup_django(stack)
        seed()
        walbust = stack.start_walbust(args.walbust, HERE / "rules.yaml")
        print(f"walbust streams (config {walbust.config_path})")
        tests = subprocess.run([str(args.walbust), "test", "-c", walbust.config_path, str(HERE / "rules.test.yaml")],
                               capture_output=True, text=True)
        print(f"walbust test rules.test.yaml: {tests.stdout.strip().splitlines()[-1] if tests.stdout else tests.stderr}")
        import redis

        # A process-local cache kept coherent from walbust's events, as each web process would.
        listener = invalidation_subscriber.InvalidationListener(
            redis.Redis.from_url(stack.redis.url), invalidation_subscriber.LocalCache(), channel=CHANNEL,
            on_event=events.append)
        listener.start()
        listener.ready.wait(5)
        if args.serve:
            serve(stack)
        else:
            walkthrough(stack, walbust)
            print("\nRun it with --serve to click through the blog yourself.")
    finally:
        if "django.db" in sys.modules:
            sys.modules["django.db"].connections.close_all()
        stack.stop()


if __name__ == "__main__":
    main()
