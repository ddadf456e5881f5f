"""Throwaway PostgreSQL and Redis servers and a driver for the walbust binary.

Used by the integration and fault tests (tests/integration/test_*.py, fault_*.py) and by
scripts/demo.py. Only the standard library, psycopg2 and redis-py are used, always through
/usr/bin/python3 (Debian's python3-psycopg2 and python3-redis).

Every server lives in its own temporary directory, listens on a free port on 127.0.0.1 and
is stopped and removed by close(), by the context manager, or at interpreter exit, also
when a test fails. A server that cannot start raises ServerError with the tail of its log:
tests that need servers fail, they never skip.
"""

import atexit
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import psycopg2
import psycopg2.extensions
import redis as redis_py

PG_BIN = os.environ.get("WALBUST_PG_BIN", "/usr/lib/postgresql/15/bin")
REDIS_SERVER = os.environ.get("WALBUST_REDIS_SERVER", "redis-server")
SOURCE_DIR = os.environ.get(
    "WALBUST_SOURCE_DIR",
    os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")),
)

# Environment variables that change how walbust behaves; the fixtures start it with a
# clean environment so a developer's shell (or systemd) cannot leak into a test.
_WALBUST_ENV_DROP = (
    "WALBUST_CONFIG",
    "WALBUST_PG_DSN",
    "WALBUST_REDIS_URL",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "CREDENTIALS_DIRECTORY",
    "STATE_DIRECTORY",
)


class ServerError(RuntimeError):
    """A throwaway server could not be started or stopped."""


# ---------------------------------------------------------------------------------------
# small helpers


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read, close).

    Another process may take it before the server binds it: servers retry on collision.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"(no log at {path}: {e})"
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


def wait_for(predicate, timeout=30.0, interval=0.05, message=None, on_timeout=None):
    """Polls predicate() until it returns a truthy value, which is returned.

    Raises AssertionError after timeout seconds; the message includes on_timeout() (e.g. a
    log tail) when given. Exceptions raised by predicate propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = f"timed out after {timeout:.1f}s waiting for {message or predicate}"
            if on_timeout is not None:
                text += "\n" + str(on_timeout())
            raise AssertionError(text)
        time.sleep(interval)


class Lsn(int):
    """A WAL position: an int that prints as PostgreSQL does (X/YYYYYYYY)."""

    @classmethod
    def parse(cls, text):
        if text is None:
            return None
        if isinstance(text, int):
            return cls(text)
        hi, lo = text.split("/")
        return cls((int(hi, 16) << 32) | int(lo, 16))

    def __str__(self):
        return f"{int(self) >> 32:X}/{int(self) & 0xFFFFFFFF:X}"

    __repr__ = __str__


# WAL geometry of a default build: 8 kB pages, 16 MB segments. A page starts with a short
# header (24 bytes), a segment with a long one (40 bytes).
_XLOG_BLCKSZ = 8192
_XLOG_SEG_SIZE = 16 * 1024 * 1024
_SHORT_PHD = 24
_LONG_PHD = 40


def end_lsn_from_insert_lsn(lsn):
    """The end LSN of the last WAL record, given pg_current_wal_insert_lsn() right after it.

    The two differ only when the record ended exactly on a page boundary: the insert
    position then points past the next page's header, while the record's end LSN (what a
    Commit message carries and what walbust acknowledges) is the boundary itself.
    """
    lsn = int(lsn)
    if lsn % _XLOG_SEG_SIZE == _LONG_PHD:
        return Lsn(lsn - _LONG_PHD)
    if lsn % _XLOG_BLCKSZ == _SHORT_PHD and lsn % _XLOG_SEG_SIZE != _SHORT_PHD:
        return Lsn(lsn - _SHORT_PHD)
    return Lsn(lsn)


# Strong references: a server must be stopped even when its owner dropped it without
# calling close() (e.g. an exception unwound the frame that held it).
_live = set()


def _close_all():
    for obj in list(_live):
        try:
            obj.close()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print(f"fixtures: cleanup of {obj!r} failed: {e}", file=sys.stderr)


atexit.register(_close_all)


class Throwaway:
    """The life cycle every object of the lab shares: closed at interpreter exit even when
    its owner dropped it, started at once unless start=False (and closed again when the
    start fails, so nothing is left running), usable in `with`. Subclasses define start()
    (when they start anything) and close(), which calls _untrack()."""

    def _track(self, start=False):
        _live.add(self)
        if start:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    def _untrack(self):
        _live.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _pg_user_prefix():
    """Runs PostgreSQL programs as the postgres system user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"]
    return []


# ---------------------------------------------------------------------------------------
# PostgreSQL


class PostgresServer(Throwaway):
    """A throwaway PostgreSQL 15 cluster with logical WAL.

    Creates the login role `walbust` (REPLICATION) and the database `walbust` owned by it.
    `dsn` is the conninfo walbust uses; connect()/execute()/query() default to the same
    role and database, pass user="postgres" for superuser work.
    """

    SUPERUSER = "postgres"
    ROLE = "walbust"
    DATABASE = "walbust"

    def __init__(self, wal_sender_timeout="60s", settings=None, start=True):
        self.wal_sender_timeout = wal_sender_timeout
        self.extra_settings = dict(settings or {})
        self.tmp = tempfile.mkdtemp(prefix="walbust-pg-")
        self.datadir = os.path.join(self.tmp, "data")
        self.sockdir = os.path.join(self.tmp, "sock")
        self.logfile = os.path.join(self.tmp, "postgres.log")
        self.port = None
        self.running = False
        self._initialized = False
        os.makedirs(self.sockdir)
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            for path in (self.tmp, self.sockdir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            os.chmod(self.tmp, 0o755)
        self._track(start)

    def __repr__(self):
        return f"PostgresServer(port={self.port}, dir={self.tmp})"

    # -- lifecycle ------------------------------------------------------------------

    def _pg(self, program, *args, check=True, timeout=120):
        argv = _pg_user_prefix() + [os.path.join(PG_BIN, program), *args]
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise ServerError(
                f"{program} {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stdout}"
                f"\n--- {self.logfile} ---\n{log_tail(self.logfile)}"
            )
        return proc

    def _initdb(self):
        self._pg(
            "initdb", "-D", self.datadir, "-U", self.SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sockdir}'",
            "wal_level": "logical",
            "max_replication_slots": "20",
            "max_wal_senders": "20",
            "max_connections": "60",
            "wal_sender_timeout": f"'{self.wal_sender_timeout}'",
            "fsync": "off",
            "synchronous_commit": "on",
            "full_page_writes": "off",
            "shared_buffers": "'32MB'",
            "max_wal_size": "'1GB'",
            "log_min_messages": "info",
            "log_replication_commands": "on",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
        }
        settings.update({k: str(v) for k, v in self.extra_settings.items()})
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# walbust test fixture\n")
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write(
                "local all all trust\n"
                "local replication all trust\n"
                "host all all 127.0.0.1/32 trust\n"
                "host replication all 127.0.0.1/32 trust\n"
            )

    def start(self):
        if self.running:
            return
        if not self._initialized:
            self._initdb()
        for attempt in range(5):
            if self.port is None or attempt > 0:
                self.port = free_port()
            proc = self._pg(
                "pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w", "-t", "60",
                "-o", f"-p {self.port}", "start", check=False,
            )
            if proc.returncode == 0:
                break
            tail = log_tail(self.logfile)
            if "could not bind" in tail or "already in use" in tail:
                continue  # another process took the port: pick a new one
            raise ServerError(
                f"postgres failed to start (pg_ctl exit {proc.returncode}):\n{proc.stdout}"
                f"\n--- {self.logfile} ---\n{tail}"
            )
        else:
            raise ServerError(f"postgres could not bind a free port:\n{log_tail(self.logfile)}")
        self.running = True
        if not self._initialized:
            # (no `with conn`: since psycopg2 2.9 it opens a transaction block even in
            # autocommit mode, and CREATE DATABASE refuses to run inside one)
            conn = self.connect(user=self.SUPERUSER, dbname="postgres")
            try:
                with conn.cursor() as cur:
                    cur.execute(f"CREATE ROLE {self.ROLE} WITH LOGIN REPLICATION")
                    cur.execute(f"CREATE DATABASE {self.DATABASE} OWNER {self.ROLE}")
            finally:
                conn.close()
            self._initialized = True

    def stop(self, mode="fast"):
        """Stops the server: mode 'smart', 'fast' (disconnects clients) or 'immediate'."""
        if not self.running:
            return
        self._pg("pg_ctl", "-D", self.datadir, "-m", mode, "-w", "-t", "60", "stop", check=False)
        self.running = False

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def close(self):
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._untrack()

    def log(self):
        with open(self.logfile, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, lines=40):
        return log_tail(self.logfile, lines)

    # -- connections ----------------------------------------------------------------

    def enable_tls(self, certs):
        """Turns TLS on (certs: a TlsCertificates; the server presents its 127.0.0.1 and
        localhost certificate) and lets walbust's role in over TCP only with TLS
        (`hostssl`; `hostnossl` is rejected). Reloads, no restart."""
        import pwd

        pw = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        for src, name in ((certs.server_cert, "server.crt"), (certs.server_key, "server.key")):
            dst = os.path.join(self.datadir, name)
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)
            if pw:
                os.chown(dst, pw.pw_uid, pw.pw_gid)
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write(
                "local all all trust\n"
                "local replication all trust\n"
                f"hostssl all {self.ROLE} 127.0.0.1/32 trust\n"
                f"hostssl replication {self.ROLE} 127.0.0.1/32 trust\n"
                f"hostnossl all {self.ROLE} 127.0.0.1/32 reject\n"
                f"hostnossl replication {self.ROLE} 127.0.0.1/32 reject\n"
                "host all all 127.0.0.1/32 trust\n"
                "host replication all 127.0.0.1/32 trust\n"
            )
        conn = self.connect(user=self.SUPERUSER, dbname="postgres")
        try:
            with conn.cursor() as cur:
                cur.execute("ALTER SYSTEM SET ssl = on")
                cur.execute("ALTER SYSTEM SET ssl_cert_file = 'server.crt'")
                cur.execute("ALTER SYSTEM SET ssl_key_file = 'server.key'")
                cur.execute("SELECT pg_reload_conf()")
        finally:
            conn.close()
        wait_for(lambda: self.query("SHOW ssl", user=self.SUPERUSER, dbname="postgres")[0][0] == "on",
                 timeout=30, message="ssl = on after the reload")

    @property
    def dsn(self):
        """libpq conninfo for walbust's own connection."""
        return f"host=127.0.0.1 port={self.port} dbname={self.DATABASE} user={self.ROLE}"

    def conninfo(self, user=None, dbname=None):
        return (
            f"host=127.0.0.1 port={self.port} dbname={dbname or self.DATABASE} "
            f"user={user or self.ROLE}"
        )

    def connect(self, user=None, dbname=None, autocommit=True):
        conn = psycopg2.connect(self.conninfo(user, dbname), connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def execute(self, sql, params=None, user=None, dbname=None):
        """Runs one statement (autocommit) and returns its rows, if any."""
        conn = self.connect(user=user, dbname=dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                if cur.description is not None:
                    return cur.fetchall()
                return None
        finally:
            conn.close()

    def query(self, sql, params=None, user=None, dbname=None):
        return self.execute(sql, params, user=user, dbname=dbname) or []

    # -- WAL and slots --------------------------------------------------------------

    def current_wal_lsn(self):
        return Lsn.parse(self.query("SELECT pg_current_wal_lsn()::text")[0][0])

    def current_wal_insert_lsn(self):
        return Lsn.parse(self.query("SELECT pg_current_wal_insert_lsn()::text")[0][0])

    def slot_info(self, name="walbust"):
        """The slot's row of pg_replication_slots (LSNs as Lsn), or None."""
        rows = self.query(
            "SELECT slot_name, plugin, slot_type, database, temporary, active, active_pid,"
            " restart_lsn::text, confirmed_flush_lsn::text, wal_status"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (name,),
        )
        if not rows:
            return None
        keys = (
            "slot_name", "plugin", "slot_type", "database", "temporary", "active",
            "active_pid", "restart_lsn", "confirmed_flush_lsn", "wal_status",
        )
        info = dict(zip(keys, rows[0]))
        info["restart_lsn"] = Lsn.parse(info["restart_lsn"])
        info["confirmed_flush_lsn"] = Lsn.parse(info["confirmed_flush_lsn"])
        return info

    def confirmed_flush_lsn(self, name="walbust"):
        info = self.slot_info(name)
        return None if info is None else info["confirmed_flush_lsn"]

    def create_slot(self, name="walbust", plugin="pgoutput"):
        return self.query(
            "SELECT slot_name, lsn::text FROM pg_create_logical_replication_slot(%s, %s)",
            (name, plugin),
        )[0]

    def drop_slot(self, name="walbust"):
        self.execute("SELECT pg_drop_replication_slot(%s)", (name,))

    def peek_changes(self, slot="walbust", publication="walbust", upto_changes=None):
        """Pending pgoutput messages of `slot` without consuming them: [(Lsn, xid, bytes)]."""
        rows = self.query(
            "SELECT lsn::text, xid::text::bigint, data FROM pg_logical_slot_peek_binary_changes("
            "%s, NULL, %s, 'proto_version', '1', 'publication_names', %s)",
            (slot, upto_changes, publication),
        )
        return [(Lsn.parse(lsn), xid, bytes(data)) for lsn, xid, data in rows]

    def pending_xids(self, slot="walbust", publication="walbust"):
        """Transactions the slot would (re)send: the xids of pending Begin messages."""
        return [xid for _, xid, data in self.peek_changes(slot, publication) if data[:1] == b"B"]

    def walsender_pids(self):
        return [r[0] for r in self.query(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'")]

    def terminate_backend(self, pid):
        return self.query("SELECT pg_terminate_backend(%s)", (pid,), user=self.SUPERUSER)[0][0]


class StandbyServer(PostgresServer):
    """A physical hot standby of `primary`: pg_basebackup -R -X stream, its own port.

    Read-only; pause_replay()/resume_replay() stop and restart WAL replay so a test can
    hold it behind the primary. Roles and databases come from the primary.
    """

    def __init__(self, primary, start=True):
        self.primary = primary
        super().__init__(start=start)

    def __repr__(self):
        return f"StandbyServer(port={self.port}, primary={self.primary.port}, dir={self.tmp})"

    def _initdb(self):
        self._pg(
            "pg_basebackup", "-D", self.datadir, "-h", "127.0.0.1", "-p", str(self.primary.port),
            "-U", self.SUPERUSER, "-R", "-X", "stream", "-c", "fast", "--no-sync",
        )
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# walbust test fixture: standby\n")
            f.write(f"unix_socket_directories = '{self.sockdir}'\n")
            f.write("hot_standby = on\n")
            f.write("wal_receiver_status_interval = '1s'\n")

    def start(self):
        if not self._initialized:
            self._initdb()
            self._initialized = True  # the primary's roles and database came with the copy
        super().start()

    def replay_lsn(self):
        return Lsn.parse(self.query("SELECT pg_last_wal_replay_lsn()::text")[0][0])

    def pause_replay(self):
        self.execute("SELECT pg_wal_replay_pause()", user=self.SUPERUSER)
        wait_for(lambda: self.query("SELECT pg_get_wal_replay_pause_state()", user=self.SUPERUSER)[0][0]
                 == "paused", 10, message="replay paused")

    def resume_replay(self):
        self.execute("SELECT pg_wal_replay_resume()", user=self.SUPERUSER)

    def wait_replayed(self, lsn, timeout=30.0):
        lsn = int(lsn)
        wait_for(lambda: self.replay_lsn() >= lsn, timeout,
                 message=f"standby replayed {Lsn(lsn)}")


def commit_and_get_end_lsn(conn):
    """Commits conn's transaction and returns an LSN >= its commit record's end.

    pg_current_wal_insert_lsn() right after the commit is exactly the commit's end LSN
    unless some other backend wrote WAL in between (then it is a little later).
    """
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_insert_lsn()::text")
        lsn = Lsn.parse(cur.fetchone()[0])
    conn.commit()  # the SELECT above opened a (read-only) transaction when not autocommit
    return end_lsn_from_insert_lsn(lsn)


def psql(pg, *args, user=None, dbname=None, input=None, timeout=120):
    """Runs psql against pg as an operator or another service would (TCP, no ~/.psqlrc,
    ON_ERROR_STOP); ARGS follow, e.g. "-At", "-c", SQL. Returns the CompletedProcess."""
    return subprocess.run(
        [os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
         "-d", pg.conninfo(user, dbname), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, input=input, timeout=timeout,
    )


# ---------------------------------------------------------------------------------------
# Redis


def redis_port_args(port, tls, cert=None, key=None):
    """redis-server's listening arguments: plain on `port`, or TLS only there, with client
    certificates required (the server checks the client's, the client the server's)."""
    if not tls:
        return ["--port", str(port)]
    return ["--port", "0", "--tls-port", str(port),
            "--tls-cert-file", cert or tls.server_cert, "--tls-key-file", key or tls.server_key,
            "--tls-ca-cert-file", tls.ca, "--tls-auth-clients", "yes"]


def redis_client(port, tls, verify=True, **kwargs):
    """A redis-py client for 127.0.0.1:`port`, over TLS with the test client certificate
    when `tls` is given (the host name is not checked: the certificates name 127.0.0.1)."""
    if tls:
        kwargs.update(ssl=True, ssl_ca_certs=tls.ca, ssl_certfile=tls.client_cert,
                      ssl_keyfile=tls.client_key, ssl_check_hostname=False)
        if not verify:
            kwargs["ssl_cert_reqs"] = "none"
    return redis_py.Redis(host="127.0.0.1", port=port, **kwargs)


def stop_process(proc, timeout=10):
    """SIGTERM (after SIGCONT, in case a test paused it), SIGKILL if it does not exit."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def wait_redis_ping(proc, client, timeout=20.0):
    """Waits until a just-started redis-server answers PING; False when it exited first or
    did not answer in time. `client(socket_timeout=...)` makes a redis-py client for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if client(socket_timeout=1).ping():
                return True
        except redis_py.exceptions.ConnectionError:
            pass
        time.sleep(0.02)
    return False


class TlsCertificates(Throwaway):
    """Throwaway certificates made with the openssl command line: a CA; server certificates
    signed by it for 127.0.0.1 and localhost (valid, expired, and one for another name); a
    client certificate; and an unrelated CA. Keys are mode 0600. Attributes are paths:
    ca, other_ca, server_cert/server_key, expired_cert/expired_key, wrong_name_cert/
    wrong_name_key, client_cert/client_key."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="walbust-tls-")
        self._track()
        try:
            self.ca, self.ca_key = self._ca("ca", "walbust test CA")
            self.other_ca, _ = self._ca("other-ca", "unrelated CA")
            san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
            self.server_cert, self.server_key = self._signed("server", "localhost", san, days=30)
            self.expired_cert, self.expired_key = self._signed("expired", "localhost", san, days=-1)
            self.wrong_name_cert, self.wrong_name_key = self._signed(
                "wrong-name", "elsewhere.example", "subjectAltName=DNS:elsewhere.example", days=30)
            self.client_cert, self.client_key = self._signed(
                "client", "walbust", "extendedKeyUsage=clientAuth", days=30)
        except BaseException:
            self.close()
            raise

    def _openssl(self, *args):
        res = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise ServerError(f"openssl {' '.join(args)} failed:\n{res.stderr}")

    def _ca(self, name, cn):
        crt, key = os.path.join(self.dir, name + ".crt"), os.path.join(self.dir, name + ".key")
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                      "-days", "30", "-subj", "/CN=" + cn)
        os.chmod(key, 0o600)
        return crt, key

    def _signed(self, name, cn, extension, days):
        # `-days -1` makes a certificate whose validity ended yesterday: expired.
        crt, key = os.path.join(self.dir, name + ".crt"), os.path.join(self.dir, name + ".key")
        csr, ext = os.path.join(self.dir, name + ".csr"), os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write(extension + "\n")
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
                      "-out", crt, "-days", str(days), "-extfile", ext)
        os.chmod(key, 0o600)
        return crt, key

    def client_tls(self, **override):
        """walbust's tls: section for a server signed by this CA, with the client certificate."""
        return dict({"ca_file": self.ca, "cert_file": self.client_cert, "key_file": self.client_key}, **override)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        self._untrack()


class RedisServer(Throwaway):
    """A throwaway redis-server without persistence. With `tls` (a TlsCertificates) it
    accepts TLS only (`--port 0 --tls-port P`) and requires a client certificate;
    `server_cert` picks which of the certificates it presents ("server", "expired",
    "wrong_name")."""

    def __init__(self, notify_keyspace_events=None, extra_args=None, start=True, tls=None,
                 server_cert="server"):
        self.tmp = tempfile.mkdtemp(prefix="walbust-redis-")
        self.logfile = os.path.join(self.tmp, "redis.log")
        self.notify_keyspace_events = notify_keyspace_events
        self.extra_args = list(extra_args or [])
        self.tls = tls
        self.server_cert = server_cert
        self.port = None
        self.proc = None
        self._track(start)

    def __repr__(self):
        return f"RedisServer(port={self.port}, dir={self.tmp})"

    @property
    def url(self):
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def client(self, **kwargs):
        kwargs.setdefault("socket_timeout", 30)
        # With another server certificate the test's own client only fills and reads keys.
        return redis_client(self.port, self.tls, verify=self.server_cert == "server", **kwargs)

    def tls_args(self):
        if not self.tls:
            return redis_port_args(self.port, None)
        return redis_port_args(self.port, self.tls, getattr(self.tls, self.server_cert + "_cert"),
                               getattr(self.tls, self.server_cert + "_key"))

    def start(self):
        if self.proc is not None and self.proc.poll() is None:
            return
        for attempt in range(5):
            if self.port is None or attempt > 0:
                self.port = free_port()
            argv = [
                REDIS_SERVER, *self.tls_args(), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.tmp,
                "--logfile", self.logfile, "--daemonize", "no",
            ]
            if self.notify_keyspace_events:
                argv += ["--notify-keyspace-events", self.notify_keyspace_events]
            argv += self.extra_args
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            if wait_redis_ping(self.proc, self.client):
                return
            tail = log_tail(self.logfile)
            self._terminate()
            if "Address already in use" in tail:
                continue
            raise ServerError(f"redis-server failed to start:\n{tail}")
        raise ServerError(f"redis-server could not bind a free port:\n{log_tail(self.logfile)}")

    def _terminate(self):
        stop_process(self.proc)
        self.proc = None

    def stop(self):
        self._terminate()

    def restart(self):
        """Stops and starts again on the same port (every key is gone: no persistence)."""
        self.stop()
        self.start()

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def close(self):
        try:
            self._terminate()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._untrack()


class RedisMonitor:
    """Records every command Redis receives (MONITOR) on a background connection."""

    def __init__(self, redis):
        self.commands = []
        self._conn = redis.client().connection_pool.get_connection("MONITOR")
        self._conn.send_command("MONITOR")
        assert self._conn.read_response() in (b"OK", "OK")
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                line = self._conn.read_response()
            except Exception:  # connection closed by stop()
                return
            text = line.decode(errors="replace") if isinstance(line, bytes) else str(line)
            # '1700000000.123456 [0 127.0.0.1:5555] "EXISTS" "key"'
            m = re.search(r'\] "([A-Za-z]+)"', text)
            if m:
                self.commands.append(m.group(1).upper())

    def stop(self, redis):
        # MONITOR lines may still be in flight: a marker command sent now is recorded
        # after everything before it, so once it shows up the record is complete.
        redis.client().echo("monitor-sync")
        wait_for(lambda: "ECHO" in self.commands, 30, message="the MONITOR marker")
        self.commands.remove("ECHO")
        self._stop = True
        try:
            self._conn.disconnect()
        except AttributeError:  # the reader thread's own disconnect got there first
            pass
        self._thread.join(5)
class SentinelGroup(Throwaway):
    """A master, `replicas` replicas and `sentinels` sentinels (redis-server --sentinel)
    monitoring it as `name`, failing over about 3 s after the master stops answering
    (down-after-milliseconds 1000). Servers are RedisServer objects; the sentinels'
    addresses are `nodes` ("127.0.0.1:PORT")."""

    def __init__(self, name="mymaster", replicas=1, sentinels=3):
        self.name = name
        self.master = RedisServer()
        self._track()
        self.replicas = []
        self.sentinels = []
        try:
            for _ in range(replicas):
                self.replicas.append(RedisServer(extra_args=["--replicaof", "127.0.0.1", str(self.master.port)]))
            for _ in range(sentinels):
                self.sentinels.append(self._start_sentinel())
            wait_for(lambda: self.named_master() == ("127.0.0.1", self.master.port), timeout=30,
                     message="sentinels to agree on the master")
            wait_for(lambda: self.master.client().info("replication")["connected_slaves"] >= replicas,
                     timeout=30, message="replicas to connect")
        except BaseException:
            self.close()
            raise

    def _start_sentinel(self):
        tmp = tempfile.mkdtemp(prefix="walbust-sentinel-")
        port = free_port()
        conf = os.path.join(tmp, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(f"port {port}\nbind 127.0.0.1\ndir {tmp}\nlogfile {tmp}/sentinel.log\n"
                    f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 2\n"
                    f"sentinel down-after-milliseconds {self.name} 1000\n"
                    f"sentinel failover-timeout {self.name} 10000\n"
                    f"sentinel parallel-syncs {self.name} 1\n")
        proc = subprocess.Popen([REDIS_SERVER, conf, "--sentinel"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)
        sentinel = {"port": port, "proc": proc, "tmp": tmp}
        client = lambda **kw: redis_py.Redis(host="127.0.0.1", port=port, **kw)  # noqa: E731
        if not wait_redis_ping(proc, client):
            proc.kill()
            raise ServerError(f"redis sentinel failed to start:\n{log_tail(os.path.join(tmp, 'sentinel.log'))}")
        return sentinel

    @property
    def nodes(self):
        return [f"127.0.0.1:{s['port']}" for s in self.sentinels]

    def named_master(self):
        """(host, port) the first answering sentinel names, or None."""
        for s in self.sentinels:
            try:
                addr = redis_py.Redis(host="127.0.0.1", port=s["port"], socket_timeout=2).execute_command(
                    "SENTINEL", "get-master-addr-by-name", self.name)
                if addr:
                    return (addr[0].decode(), int(addr[1]))
            except redis_py.exceptions.RedisError:
                continue
        return None

    def server_at(self, port):
        return next(s for s in [self.master, *self.replicas] if s.port == port)

    def current_master(self):
        """The RedisServer the sentinels name."""
        addr = self.named_master()
        return self.server_at(addr[1]) if addr else None

    def client(self, **kwargs):
        """A client that follows the master the sentinels name."""
        from redis.sentinel import Sentinel
        sentinel = Sentinel([("127.0.0.1", s["port"]) for s in self.sentinels], socket_timeout=5)
        return sentinel.master_for(self.name, socket_timeout=kwargs.get("socket_timeout", 30))

    def failover(self):
        """SENTINEL FAILOVER on the first sentinel (a replica must be in sync)."""
        redis_py.Redis(host="127.0.0.1", port=self.sentinels[0]["port"]).execute_command(
            "SENTINEL", "FAILOVER", self.name)

    def close(self):
        for s in self.sentinels:
            if s["proc"].poll() is None:
                s["proc"].kill()
                s["proc"].wait(10)
            shutil.rmtree(s["tmp"], ignore_errors=True)
        for r in [self.master, *self.replicas]:
            r.close()
        self._untrack()


# ---------------------------------------------------------------------------------------
# walbust


def thread_names(pid):
    """The names of a process's threads (/proc/PID/task/*/comm)."""
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return names


def write_rules(directory, text, name="rules.yaml"):
    """Writes rules (or any YAML) from a test's text into DIRECTORY/NAME; returns the path."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def walbust_binary():
    path = os.environ.get("WALBUST_BIN") or os.path.join(SOURCE_DIR, "build", "walbust")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ServerError(f"walbust binary not found or not executable: {path} (set WALBUST_BIN)")
    return path


def binary_is_sanitized(path=None):
    """True when the binary is built with AddressSanitizer (its RSS is not comparable)."""
    path = path or walbust_binary()
    try:
        out = subprocess.run(["ldd", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "libasan" in out or "libubsan" in out


def bounded_quarantine_env():
    """The environment for walbust in a test that measures its RSS: a sanitized build keeps
    freed blocks in a 256 MB quarantine, which would look like growth; 8 MB keeps it small.
    None for a Release binary."""
    if not binary_is_sanitized():
        return None
    return {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=8"}


def walbust_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in _WALBUST_ENV_DROP}
    env.update(extra or {})
    return env


def run_walbust(args, env=None, timeout=120, input=None, cwd=None, binary=None):
    """Runs a one-shot `walbust ARGS...`; returns the CompletedProcess (text mode)."""
    return subprocess.run(
        [binary or walbust_binary(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        timeout=timeout, input=input, env=walbust_env(env), cwd=cwd,
    )


def _yaml_scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return str(v)
    # A JSON string is a valid YAML 1.2 double-quoted scalar.
    return json.dumps(str(v), ensure_ascii=False)


def to_yaml(value, indent=0):
    """Block-style YAML for dicts, lists and scalars (enough for configs and rules)."""
    pad = "  " * indent
    lines = []
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:\n{to_yaml(v, indent + 1)}")
            elif isinstance(v, dict):
                lines.append(f"{pad}{k}: {{}}\n")
            elif isinstance(v, list):
                lines.append(f"{pad}{k}: []\n")
            else:
                lines.append(f"{pad}{k}: {_yaml_scalar(v)}\n")
        return "".join(lines)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        for v in value:
            if isinstance(v, (dict, list)) and v:
                body = to_yaml(v, indent + 1)
                # put the first line of the nested block right after "- "
                lines.append(f"{pad}- {body.lstrip()}")
            else:
                empty = "{}" if isinstance(v, dict) else "[]"
                text = empty if isinstance(v, (dict, list)) else _yaml_scalar(v)
                lines.append(f"{pad}- {text}\n")
        return "".join(lines)
    return pad + _yaml_scalar(value) + "\n"


def deep_merge(base, override):
    out = dict(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        elif v is _DELETE:
            out.pop(k, None)
        else:
            out[k] = v
    return out


_DELETE = object()
DELETE = _DELETE  # use as an override value to remove a key from the default config


MARKER_TABLE = "walbust_marker"
MARKER_RULES = """\
# Test-only rule: a row in walbust_marker clears walbust_marker_{id}. Tests insert a
# marker after their workload and wait for its key to vanish: walbust has then handled
# every transaction committed before it.
version: 1
rules:
  - name: test-marker
    table: walbust_marker
    on: [insert]
    delete: ["walbust_marker_{id}"]
"""


class Walbust(Throwaway):
    """Runs `walbust run` against a PostgresServer and a RedisServer.

    The config (README "Configuration reference") is written to WORKDIR/walbust.yaml from `config`, which can be
    edited before start() (then call write_config()). `marker=True` adds a rules file for
    the walbust_marker table so sync() can wait until walbust has caught up.
    """

    def __init__(self, pg, redis, rules=(), slot="walbust", publication="walbust",
                 status_interval="1s", marker=True, config=None, workdir=None, binary=None):
        self.pg = pg
        self.redis = redis
        self.binary = binary or walbust_binary()
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="walbust-run-")
        os.makedirs(self.workdir, exist_ok=True)
        self.config_path = os.path.join(self.workdir, "walbust.yaml")
        self.logfile = os.path.join(self.workdir, "walbust.log")
        self.state_dir = os.path.join(self.workdir, "state")
        os.makedirs(self.state_dir, exist_ok=True)
        rule_paths = [os.path.abspath(r) for r in rules]
        if marker:
            marker_path = os.path.join(self.workdir, "marker-rules.yaml")
            with open(marker_path, "w") as f:
                f.write(MARKER_RULES)
            rule_paths.append(marker_path)
        self.slot = slot
        self.publication = publication
        base = {
            "postgres": {
                "dsn": pg.dsn if pg is not None else "",
                "slot": slot,
                "publication": publication,
                "create_slot": True,
                "status_interval": status_interval,
            },
            "redis": {
                "url": redis.url if redis is not None else "",
                "delete_command": "unlink",
                "timeout": "2s",
            },
            "rules": rule_paths,
            "batch": {"max_keys": 10000, "max_delay": "0ms"},
            "state_dir": self.state_dir,
            "metrics": {"listen": ""},
            "log": {"level": "info", "format": "text"},
        }
        self.config = deep_merge(base, config)
        self.proc = None
        self._log_fh = None
        self._log_offset = 0
        self._sampler = None
        self.peak_rss_kb = 0
        self.rss_samples = []
        self._marker_redis = None
        self.write_config()
        self._track()

    def __repr__(self):
        return f"Walbust(pid={self.pid}, dir={self.workdir})"

    def write_config(self, text=None):
        with open(self.config_path, "w") as f:
            f.write(text if text is not None else to_yaml(self.config))
        return self.config_path

    # -- process --------------------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, extra_args=(), env=None):
        if self.running():
            raise RuntimeError("walbust is already running")
        self._log_fh = open(self.logfile, "ab")
        self._log_offset = self._log_fh.tell()
        self._log_fh.write(f"=== walbust run started {time.strftime('%H:%M:%S')} ===\n".encode())
        self._log_fh.flush()
        self.proc = subprocess.Popen(
            [self.binary, "run", "-c", self.config_path, *extra_args],
            stdout=self._log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=walbust_env(env), cwd=self.workdir,
        )
        self.peak_rss_kb = 0
        self.rss_samples = []
        return self

    def _reap(self):
        if self._sampler is not None:
            self._sampler.join(5)
            self._sampler = None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def wait(self, timeout=30):
        """Waits for the process to exit on its own; returns its exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"walbust did not exit within {timeout}s\n{self.log_tail()}") from None
        self._reap()
        return code

    def stop(self, timeout=10):
        """SIGTERM and wait; returns the exit code. Fails if it takes longer than timeout."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.stop_started = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self._reap()
                raise AssertionError(
                    f"walbust did not exit within {timeout}s of SIGTERM\n{self.log_tail()}"
                ) from None
            self.stop_seconds = time.monotonic() - self.stop_started
        self._reap()
        return self.proc.returncode

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reap()

    def close(self):
        try:
            self.kill9()
        finally:
            if self._marker_redis is not None:
                self._marker_redis.close()
            if self._own_workdir and os.environ.get("WALBUST_KEEP_TMP") != "1":
                shutil.rmtree(self.workdir, ignore_errors=True)
            self._untrack()

    # -- logs -----------------------------------------------------------------------

    # What AddressSanitizer's runtime prints once per process that switches stacks (the
    # Redis targets' fibers). Not walbust's output: a sanitized build's log drops it.
    ASAN_FIBER_NOTICE = re.compile(
        r"(?m)^==\d+==WARNING: ASan doesn't fully support makecontext/swapcontext.*\n")

    def log(self, whole=False):
        """The log of the current (or last) run; whole=True for every run so far."""
        try:
            with open(self.logfile, "rb") as f:
                if not whole:
                    f.seek(self._log_offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return self.ASAN_FIBER_NOTICE.sub("", text)

    def log_tail(self, lines=60):
        text = self.log().splitlines()
        return f"--- walbust log ({self.logfile}) ---\n" + "\n".join(text[-lines:])

    def wait_for(self, predicate, timeout=30.0, interval=0.05, message=None, allow_exit=False):
        """Polls predicate(); fails early (with the log) if walbust exits meanwhile."""
        def check():
            value = predicate()
            if value:
                return value
            if not allow_exit and self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"walbust exited with {self.proc.returncode} while waiting for "
                    f"{message or predicate}\n{self.log_tail()}")
            return value

        return wait_for(check, timeout, interval, message, on_timeout=self.log_tail)

    def wait_for_log(self, pattern, timeout=30.0, allow_exit=False):
        """Waits until the current run's log matches the regex; returns the match."""
        rx = re.compile(pattern)
        return self.wait_for(lambda: rx.search(self.log()), timeout,
                             message=f"log line matching {pattern!r}", allow_exit=allow_exit)

    # -- replication state ----------------------------------------------------------

    def wait_streaming(self, timeout=30.0):
        """Waits until walbust holds its slot (an active walsender streams to it)."""
        return self.wait_for(
            lambda: (lambda i: i if i and i["active"] else None)(self.pg.slot_info(self.slot)),
            timeout, message=f"slot {self.slot} to become active")

    def wait_confirmed(self, lsn, timeout=30.0, allow_exit=False):
        """Waits until the slot's confirmed_flush_lsn >= lsn."""
        lsn = int(lsn)

        def reached():
            c = self.pg.confirmed_flush_lsn(self.slot)
            return c is not None and c >= lsn

        self.wait_for(reached, timeout, allow_exit=allow_exit,
                      message=f"confirmed_flush_lsn >= {Lsn(lsn)} "
                              f"(now {self.pg.confirmed_flush_lsn(self.slot)})")
        return self.pg.confirmed_flush_lsn(self.slot)

    def sync(self, timeout=60.0):
        """Commits a marker row and waits until walbust deleted its key.

        walbust handles transactions in commit order over one Redis connection, so once
        the marker's key is gone every earlier transaction's deletes are done too.
        Needs marker=True and blog_schema(..., marker=True) (or an equivalent table).
        """
        if self._marker_redis is None:
            self._marker_redis = self.redis.client()
        r = self._marker_redis
        mid = self.pg.query(f"SELECT nextval('{MARKER_TABLE}_id_seq')")[0][0]
        key = f"walbust_marker_{mid}"
        r.set(key, "1")
        self.pg.execute(f"INSERT INTO {MARKER_TABLE} (id, note) VALUES (%s, 'sync')", (mid,))
        self.wait_for(lambda: not r.exists(key), timeout, message=f"marker key {key} deleted")
        return mid

    # -- memory ---------------------------------------------------------------------

    def rss_kb(self):
        """Current resident set size of the process (VmRSS, kB), or None once it exited."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, TypeError):
            return None
        return None

    def start_rss_sampler(self, interval=0.01):
        """Samples RSS in a background thread until the process exits; see peak_rss_kb."""
        proc = self.proc

        def sample():
            while proc.poll() is None:
                v = self.rss_kb()
                if v is not None:
                    self.rss_samples.append((time.monotonic(), v))
                    if v > self.peak_rss_kb:
                        self.peak_rss_kb = v
                time.sleep(interval)

        self._sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        self._sampler.start()

    # -- one-shot subcommands -------------------------------------------------------

    def run_cli(self, args, timeout=120, env=None, input=None):
        """`walbust SUBCOMMAND -c CONFIG ARGS...`; returns the CompletedProcess."""
        args = list(args)
        return run_walbust([args[0], "-c", self.config_path, *args[1:]], env=env,
                           timeout=timeout, input=input, cwd=self.workdir, binary=self.binary)

    def popen_cli(self, args, env=None):
        """Starts `walbust SUBCOMMAND -c CONFIG ARGS...` with text pipes (e.g. a following
        dry-run read as it goes); returns the Popen, which the caller waits for."""
        args = list(args)
        return subprocess.Popen(
            [self.binary, args[0], "-c", self.config_path, *args[1:]], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=walbust_env(env), cwd=self.workdir,
        )


# ---------------------------------------------------------------------------------------
# what walbust reports to its supervisor: HTTP endpoints and sd_notify messages


def http_get(port, path):
    """(status, body) of GET http://127.0.0.1:PORT/PATH; (None, error) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


class NotifySocket:
    """A unix datagram socket standing in for systemd's notification socket
    (DIRECTORY/notify.sock); collects every message as (monotonic time, {field: value})."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []
        self._stop = False
        self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def kinds(self):
        """The sequence of notification kinds, STATUS and WATCHDOG folded when repeated."""
        out = []
        for _, f in self.messages:
            for key in ("READY", "RELOADING", "STOPPING", "WATCHDOG", "STATUS"):
                if key in f and (not out or out[-1] != key):
                    out.append(key)
        return out

    def statuses(self):
        """Every STATUS= text, in order."""
        return [f["STATUS"] for _, f in self.messages if "STATUS" in f]

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


# ---------------------------------------------------------------------------------------
# the blog schema of rules/blog.yaml, sample data and the key oracle

BLOG_TABLES = ("blog_category", "blog_post", "blog_comment")

def blog_rules_path():
    """rules/blog.yaml of the source tree: the tests load the example users start from."""
    path = os.path.join(SOURCE_DIR, "rules", "blog.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: the blog example rules are missing from the source tree")
    return path


def blog_schema(pg, publication="walbust", marker=True, audit=False, create_publication=True):
    """Creates the blog tables (REPLICA IDENTITY FULL) and the publication.

    marker: also the walbust_marker table used by Walbust.sync(), in the publication.
    audit: row triggers record every change (cascades included) in the unpublished table
    walbust_audit (tbl, op, old jsonb, new jsonb): an oracle independent of walbust.
    The publication is created here, before walbust creates its slot: decoding looks the
    publication up with the snapshot of the WAL it reads.
    """
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("""
                CREATE TABLE blog_category (
                    id serial PRIMARY KEY,
                    name text NOT NULL,
                    slug text NOT NULL
                );
                CREATE TABLE blog_post (
                    id serial PRIMARY KEY,
                    title text NOT NULL,
                    slug text NOT NULL,
                    content text NOT NULL DEFAULT '',
                    author_id int NOT NULL,
                    category_id int REFERENCES blog_category ON DELETE CASCADE,
                    is_featured bool NOT NULL DEFAULT false,
                    view_count int NOT NULL DEFAULT 0,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now()
                );
                CREATE TABLE blog_comment (
                    id serial PRIMARY KEY,
                    post_id int NOT NULL REFERENCES blog_post ON DELETE CASCADE,
                    author_name text NOT NULL,
                    body text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now()
                );
                CREATE INDEX ON blog_post (category_id);
                CREATE INDEX ON blog_comment (post_id);
                ALTER TABLE blog_category REPLICA IDENTITY FULL;
                ALTER TABLE blog_post REPLICA IDENTITY FULL;
                ALTER TABLE blog_comment REPLICA IDENTITY FULL;
            """)
            tables = list(BLOG_TABLES)
            if marker:
                cur.execute(f"CREATE TABLE {MARKER_TABLE} (id serial PRIMARY KEY, note text)")
                tables.append(MARKER_TABLE)
            if audit:
                cur.execute("""
                    CREATE TABLE walbust_audit (
                        seq bigserial PRIMARY KEY,
                        xid bigint NOT NULL DEFAULT txid_current(),
                        tbl text NOT NULL,
                        op text NOT NULL,
                        old jsonb,
                        new jsonb
                    );
                    CREATE FUNCTION walbust_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                        INSERT INTO walbust_audit (tbl, op, old, new) VALUES (
                            TG_TABLE_NAME, lower(TG_OP),
                            CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END,
                            CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END);
                        RETURN NULL;
                    END $$;
                """)
                for t in BLOG_TABLES:
                    cur.execute(
                        f"CREATE TRIGGER {t}_audit AFTER INSERT OR UPDATE OR DELETE ON {t} "
                        f"FOR EACH ROW EXECUTE FUNCTION walbust_audit_row()")
            if create_publication:
                cur.execute(f"CREATE PUBLICATION {publication} FOR TABLE {', '.join(tables)}")
    finally:
        conn.close()


def blog_sample_data(pg, categories=5, posts=30, comments=60, authors=5, seed=1):
    """Inserts deterministic sample rows; returns {"categories": [...], "posts": [...]} ids."""
    rng = random.Random(seed)
    conn = pg.connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            cat_ids = []
            for i in range(1, categories + 1):
                cur.execute("INSERT INTO blog_category (name, slug) VALUES (%s, %s) RETURNING id",
                            (f"Category {i}", f"category-{i}"))
                cat_ids.append(cur.fetchone()[0])
            post_ids = []
            for i in range(1, posts + 1):
                cur.execute(
                    "INSERT INTO blog_post (title, slug, content, author_id, category_id,"
                    " is_featured, view_count) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (f"Post {i}", f"post-{i}", f"Body of post {i}. " * 5,
                     rng.randint(1, authors), rng.choice(cat_ids), rng.random() < 0.2,
                     rng.randint(0, 1000)))
                post_ids.append(cur.fetchone()[0])
            for i in range(1, comments + 1):
                cur.execute(
                    "INSERT INTO blog_comment (post_id, author_name, body) VALUES (%s, %s, %s)",
                    (rng.choice(post_ids), f"reader{rng.randint(1, 20)}", f"Comment {i}"))
        conn.commit()
    finally:
        conn.close()
    return {"categories": cat_ids, "posts": post_ids, "authors": list(range(1, authors + 1))}


def _text(v):
    """A value as PostgreSQL's text output would spell it (for the key columns we use)."""
    if v is None:
        return None
    if v is True:
        return "t"
    if v is False:
        return "f"
    return str(v)


def _changed(old, new):
    return {k for k in set(old) | set(new) if old.get(k) != new.get(k)}


def blog_keys_for_post(new=None, old=None):
    """Keys rules/blog.yaml deletes for a blog_post change (insert: new; delete: old;
    update: both). An update that changes only view_count deletes nothing."""
    if old is not None and new is not None and _changed(old, new) <= {"view_count"}:
        return set()
    keys = set()
    for row in (new, old):
        if row is None:
            continue
        keys.add(f"post_detail_{_text(row['id'])}")
        keys.add("home_page_posts")
        if row.get("category_id") is not None:
            keys.add(f"category_posts_{_text(row['category_id'])}")
        if row.get("author_id") is not None:
            keys.add(f"author_posts_{_text(row['author_id'])}")
    return keys


def blog_keys_for_comment(new=None, old=None):
    return {f"post_detail_{_text(r['post_id'])}" for r in (new, old) if r is not None}


def blog_keys_for_category(new=None, old=None):
    keys = set()
    for row in (new, old):
        if row is not None:
            keys.add(f"category_posts_{_text(row['id'])}")
            keys.add("home_page_posts")
    return keys


def blog_keys(table, new=None, old=None):
    table = table.split(".")[-1]
    return {
        "blog_post": blog_keys_for_post,
        "blog_comment": blog_keys_for_comment,
        "blog_category": blog_keys_for_category,
    }[table](new=new, old=old)


def blog_all_keys(post_ids, category_ids, author_ids):
    """Every key the blog rules can produce for these ids."""
    keys = {"home_page_posts"}
    keys |= {f"post_detail_{i}" for i in post_ids}
    keys |= {f"category_posts_{i}" for i in category_ids}
    keys |= {f"author_posts_{i}" for i in author_ids}
    return keys


def audit_expected_keys(pg, since_seq=0):
    """(keys, last_seq): the oracle's keys for every audited change with seq > since_seq."""
    rows = pg.query(
        "SELECT seq, tbl, op, old, new FROM walbust_audit WHERE seq > %s ORDER BY seq",
        (since_seq,))
    keys = set()
    last = since_seq
    for seq, tbl, _op, old, new in rows:
        keys |= blog_keys(tbl, new=new, old=old)
        last = seq
    return keys, last


def fill_keys(client, keys, value="cached"):
    """SETs every key (pipelined)."""
    pipe = client.pipeline(transaction=False)
    n = 0
    for k in keys:
        pipe.set(k, value)
        n += 1
        if n % 10000 == 0:
            pipe.execute()
    pipe.execute()


def existing_keys(client, keys, chunk=20000):
    """The subset of keys that exist (pipelined EXISTS, `chunk` keys a round trip)."""
    keys = list(keys)
    out = set()
    for i in range(0, len(keys), chunk):
        part = keys[i:i + chunk]
        pipe = client.pipeline(transaction=False)
        for k in part:
            pipe.exists(k)
        out |= {k for k, e in zip(part, pipe.execute()) if e}
    return out


def finish_walbust(testcase, w, timeout=10.0):
    """Stops walbust if still running, closes it, and fails `testcase` when its log holds
    an AddressSanitizer, LeakSanitizer or UBSan report (sanitized builds print them there)."""
    try:
        if w.running():
            w.stop(timeout=timeout)
        text = w.log(whole=True)
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in text:
                testcase.fail(f"sanitizer report in walbust's log:\n{w.log_tail(120)}")
    finally:
        w.close()
