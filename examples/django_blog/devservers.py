"""Throwaway PostgreSQL, Redis and walbust processes for the example and its test.

    with devservers.Stack() as stack:          # PostgreSQL + Redis, the blog's role and database
        os.environ.update(stack.django_env())  # what blogsite/settings.py reads
        ...                                    # migrate (creates the publication), seed
        walbust = stack.start_walbust("build/walbust", "examples/django_blog/rules.yaml")

demo.py (started by run.sh) and tests/integration/test_django_example.py use it. The
servers come from the project's test lab, tests/integration/fixtures.py: each lives in its
own temporary directory on a free port on 127.0.0.1 (PostgreSQL as the postgres system user
when run as root) and is stopped and removed by stop(), or at interpreter exit; nothing
touches the machine's own PostgreSQL cluster or Redis service. A server that cannot start
raises fixtures.ServerError with its log, so a test that depends on it fails instead of
skipping.

The lab needs psycopg2 and redis-py (Debian's python3-psycopg2 and python3-redis), not
Django, so this module can be imported before Django is set up.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "integration"))

import fixtures  # noqa: E402  (tests/integration/fixtures.py)

# The lab's walbust config tunes batching and Redis for tests; the example runs walbust
# with its defaults there, as a user's first config would.
WALBUST_CONFIG = {
    "redis": {"delete_command": fixtures.DELETE, "timeout": fixtures.DELETE},
    "batch": fixtures.DELETE,
}


class Stack:
    """PostgreSQL + Redis for the blog; walbust's config, log and state in `workdir`.

    The database role owns the blog database (so Django's migrations can create the
    publication) and has REPLICATION LOGIN (so walbust can stream with it). Production
    would give walbust its own role: see docs/django.md. keep=True keeps `workdir`, with
    copies of the PostgreSQL and Redis logs, after stop().
    """

    DB = "blog"
    USER = "blog"

    def __init__(self, keep=False):
        self.workdir = Path(tempfile.mkdtemp(prefix="walbust-django-"))
        self.keep = keep
        self.pg = fixtures.PostgresServer(start=False)
        self.redis = fixtures.RedisServer(start=False)
        self.walbust = None

    def start(self):
        try:
            self.pg.start()
            self.redis.start()
            self.psql(f"CREATE ROLE {self.USER} LOGIN REPLICATION")
            self.psql(f"CREATE DATABASE {self.DB} OWNER {self.USER}")
        except BaseException:
            self.stop()
            raise
        return self

    def psql(self, sql, dbname="postgres", user="postgres"):
        """Runs SQL the way another service or an operator would: through psql."""
        result = fixtures.psql(self.pg, "-At", "-c", sql, user=user, dbname=dbname)
        if result.returncode != 0:
            raise fixtures.ServerError(f"psql failed ({result.returncode}): {sql}\n{result.stderr}")
        return result.stdout.strip()

    @property
    def dsn(self):
        return self.pg.conninfo(self.USER, self.DB)

    def django_env(self):
        """The environment variables blogsite/settings.py reads."""
        return {
            "BLOG_DB_HOST": "127.0.0.1",
            "BLOG_DB_PORT": str(self.pg.port),
            "BLOG_DB_NAME": self.DB,
            "BLOG_DB_USER": self.USER,
            "BLOG_REDIS_URL": self.redis.url,
        }

    def start_walbust(self, binary, rules):
        """`walbust run` on the blog database; returns the fixtures.Walbust once it streams."""
        config = fixtures.deep_merge(WALBUST_CONFIG, {"postgres": {"dsn": self.dsn}})
        # walbust runs in workdir: a binary path relative to ours must not break there.
        self.walbust = fixtures.Walbust(self.pg, self.redis, rules=[rules], binary=os.path.abspath(binary),
                                        marker=False, workdir=str(self.workdir), config=config)
        self.walbust.start()
        self.walbust.wait_for_log(r"streaming from slot")
        return self.walbust

    def stop(self):
        try:
            if self.walbust is not None:
                try:
                    self.walbust.stop(timeout=15)
                finally:
                    self.walbust.close()
        finally:
            for log in (self.pg.logfile, self.redis.logfile) if self.keep else ():
                if os.path.exists(log):
                    shutil.copy(log, self.workdir)
            self.pg.close()
            self.redis.close()
            if not self.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
