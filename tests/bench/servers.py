"""Throwaway PostgreSQL 15 and Redis servers for the benchmark.

Each server lives in its own temporary directory on a free loopback port and is
stopped (and its directory removed) by close(). Nothing here touches a system
cluster or a system Redis.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port, proc, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f}s")


class Postgres:
    """A PostgreSQL 15 cluster set up for logical replication.

    initdb and postgres refuse to run as root, so when the benchmark runs as root
    they run as the `postgres` system user; clients connect over TCP with trust
    authentication, so the harness itself can stay root.
    """

    def __init__(self, extra_settings=None):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="walbust-bench-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.proc = None
        self._as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, user="postgres", group="postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._extra = extra_settings or {}

    def start(self):
        subprocess.run(
            self._as_user + [f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                             "--no-sync", "-E", "UTF8", "--locale=C"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.dir}'",
            "wal_level": "logical",
            "max_wal_senders": "16",
            "max_replication_slots": "32",
            # Durability is not what is measured: fsync off keeps backlog generation fast
            # and the numbers independent of the disk. synchronous_commit stays on so a
            # commit returns only once its WAL is written, which the latency test relies on.
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "on",
            "shared_buffers": "256MB",
            # No checkpoint in the middle of a measured run.
            "max_wal_size": "8GB",
            "checkpoint_timeout": "1h",
            "autovacuum": "off",
            "logging_collector": "off",
        }
        settings.update(self._extra)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\n"
                    "host all all 127.0.0.1/32 trust\n"
                    "host replication all 127.0.0.1/32 trust\n")
        log = open(self.log_path, "ab")
        if self._as_user:
            shutil.chown(self.log_path, user="postgres", group="postgres")
        self.proc = subprocess.Popen(self._as_user + [f"{PG_BIN}/postgres", "-D", self.data],
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        _wait_for_port(self.port, self.proc, "postgres")
        # The port opens before the server accepts queries; wait until it does.
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run([f"{PG_BIN}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("postgres is not ready; see " + self.log_path)
            time.sleep(0.1)
        return self

    def dsn(self, dbname="bench"):
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user=postgres"

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: smart shutdown is enough, nothing to keep
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def make_tls_certificates(directory):
    """A CA and a server certificate for 127.0.0.1 made with openssl: {ca, cert, key}."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=walbust bench CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    with open(os.path.join(directory, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    for key in ("ca.key", "server.key"):
        os.chmod(os.path.join(directory, key), 0o600)
    return {k: os.path.join(directory, f) for k, f in
            (("ca", "ca.crt"), ("cert", "server.crt"), ("key", "server.key"))}


class Redis:
    """A Redis server without persistence, so deletes cost only what they cost in memory.
    It also listens for TLS on `tls_port` (no client certificate required), so a TLS and
    a plain contender measure against the same server process."""

    def __init__(self):
        self.port = free_port()
        self.tls_port = free_port()
        self.dir = tempfile.mkdtemp(prefix="walbust-bench-redis-")
        self.tls = None
        self.proc = None

    def start(self):
        self.tls = make_tls_certificates(self.dir)
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--tls-port", str(self.tls_port),
             "--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"],
             "--tls-ca-cert-file", self.tls["ca"], "--tls-auth-clients", "no"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        _wait_for_port(self.port, self.proc, "redis-server")
        return self

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
