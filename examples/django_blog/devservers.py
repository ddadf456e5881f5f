"""Throwaway PostgreSQL, Redis and walbust processes for the example and its test.

Everything lives in one temporary directory and is gone after stop(): nothing touches the
machine's own PostgreSQL cluster or Redis service. A server that cannot start raises
ServerError with its log, so a test that depends on it fails instead of skipping.

Only the standard library is used, so the module can be imported before Django is set up.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("WALBUST_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = os.environ.get("WALBUST_REDIS_SERVER", "/usr/bin/redis-server")


class ServerError(RuntimeError):
    pass


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port, proc, log_path, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"{what} did not listen on port {port} within {timeout}s:\n{_tail(log_path)}")


def _tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc, sig=signal.SIGTERM, timeout=15):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Postgres:
    """A PostgreSQL 15 cluster configured for logical replication, trust auth on 127.0.0.1."""

    def __init__(self, workdir):
        self.dir = Path(workdir) / "pg"
        self.port = free_port()
        self.log = Path(workdir) / "postgres.log"
        self.proc = None

    @staticmethod
    def _owner():
        """Popen arguments that run PostgreSQL as the postgres system user when we are root.

        PostgreSQL refuses to run as root. Switching user in the child (rather than through
        runuser) keeps the postmaster our direct child, so our SIGINT reaches it: runuser
        would answer a signal with SIGTERM and, two seconds later, SIGKILL.
        """
        return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}

    def start(self):
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.dir.parent, "postgres", "postgres")
        # --auth=trust also covers the "host replication" lines initdb writes for 127.0.0.1.
        initdb = subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=self.dir, **self._owner())
        if initdb.returncode != 0:
            raise ServerError(f"initdb failed ({initdb.returncode}):\n{initdb.stderr}")
        settings = {
            "port": self.port,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.dir),
            "wal_level": "logical",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            # A throwaway cluster: durability only costs time here.
            "fsync": "off",
            "full_page_writes": "off",
        }
        args = [str(PG_BIN / "postgres"), "-D", str(self.dir / "data")]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True, **self._owner())
        _wait_for_port(self.port, self.proc, self.log, "postgres")
        # The port accepts connections a little before the server accepts logins.
        deadline = time.monotonic() + 30
        while subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode:
            if time.monotonic() > deadline:
                raise ServerError(f"postgres never became ready:\n{_tail(self.log)}")
            time.sleep(0.05)
        return self

    def psql(self, sql, dbname="postgres", user="postgres"):
        """Run SQL the way another service or an operator would: through psql."""
        result = subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", user, "-d", dbname, "-c", sql],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise ServerError(f"psql failed ({result.returncode}): {sql}\n{result.stderr}")
        return result.stdout.strip()

    def stop(self):
        # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients (walbust) at once.
        _stop(self.proc, signal.SIGINT)


class Redis:
    def __init__(self, workdir):
        self.dir = Path(workdir)
        self.port = free_port()
        self.log = self.dir / "redis.log"
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.dir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_port(self.port, self.proc, self.log, "redis-server")
        return self

    def stop(self):
        _stop(self.proc)


class Walbust:
    """`walbust run` with a generated config; start() returns once it streams."""

    def __init__(self, binary, workdir, *, dsn, redis_url, rules, slot="walbust", publication="walbust"):
        self.binary = str(binary)
        self.dir = Path(workdir)
        self.config = self.dir / "walbust.yaml"
        self.log = self.dir / "walbust.log"
        self.proc = None
        state = self.dir / "walbust-state"
        state.mkdir(exist_ok=True)
        # A JSON string is a valid YAML scalar: paths and DSNs with odd characters stay intact.
        self.config.write_text(
            "postgres:\n"
            f"  dsn: {json.dumps(dsn)}\n"
            f"  slot: {json.dumps(slot)}\n"
            f"  publication: {json.dumps(publication)}\n"
            "  status_interval: 1s\n"
            "redis:\n"
            f"  url: {json.dumps(redis_url)}\n"
            "rules:\n"
            f"  - {json.dumps(str(rules))}\n"
            f"state_dir: {json.dumps(str(state))}\n"
            "metrics:\n"
            "  listen: \"\"\n"
            "log:\n"
            "  format: text\n")

    def start(self, timeout=30):
        self.log_file = open(self.log, "ab")
        self.proc = subprocess.Popen([self.binary, "run", "-c", str(self.config)], stdout=self.log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while "streaming from slot" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise ServerError(f"walbust exited with {self.proc.returncode}:\n{_tail(self.log)}")
            if time.monotonic() > deadline:
                raise ServerError(f"walbust did not start streaming within {timeout}s:\n{_tail(self.log)}")
            time.sleep(0.05)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def audit(self, *args):
        """`walbust audit` with this config: the cache families no rule invalidates."""
        return subprocess.run([self.binary, "audit", "-c", str(self.config), *args],
                              capture_output=True, text=True, timeout=120)

    def stop(self):
        _stop(self.proc)
        if self.proc is not None:
            self.log_file.close()


class Stack:
    """PostgreSQL + Redis for the blog, in one temporary directory.

    The database role owns the blog database (so Django's migrations can create the
    publication) and has REPLICATION LOGIN (so walbust can stream with it). Production
    would give walbust its own role: see docs/django.md.
    """

    DB = "blog"
    USER = "blog"

    def __init__(self, keep=False):
        self.workdir = Path(tempfile.mkdtemp(prefix="walbust-django-"))
        self.keep = keep
        self.pg = Postgres(self.workdir)
        self.redis = Redis(self.workdir)
        self.walbust = None

    def start(self):
        try:
            self.pg.start()
            self.redis.start()
            self.pg.psql(f"CREATE ROLE {self.USER} LOGIN REPLICATION")
            self.pg.psql(f"CREATE DATABASE {self.DB} OWNER {self.USER}")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def dsn(self):
        return f"host=127.0.0.1 port={self.pg.port} dbname={self.DB} user={self.USER}"

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
        self.walbust = Walbust(binary, self.workdir, dsn=self.dsn, redis_url=self.redis.url, rules=rules)
        self.walbust.start()
        return self.walbust

    def stop(self):
        for server in (self.walbust, self.pg, self.redis):
            if server is not None:
                server.stop()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
