"""A throwaway Redis Cluster for the scale-out tests.

RedisCluster starts N masters (and optionally one replica each) as redis-server processes
in cluster mode on free ports of 127.0.0.1, joins them with `redis-cli --cluster create`,
and waits until every node reports cluster_state:ok. It can kill a node with SIGKILL,
restart it, wait for a replica to take over, and move slots between masters with
`redis-cli --cluster reshard`. A cluster that cannot start raises ClusterError: tests
that need it fail, they never skip.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis as redis_py

from fixtures import (
    REDIS_SERVER,
    Throwaway,
    free_port,
    log_tail,
    redis_client,
    redis_port_args,
    stop_process,
    wait_redis_ping,
)

REDIS_CLI = os.environ.get("WALBUST_REDIS_CLI", "redis-cli")

class ClusterError(RuntimeError):
    """The cluster could not be started or did not reach the expected state."""


def _crc16_table():
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC = _crc16_table()


def key_slot(key):
    if isinstance(key, str):
        key = key.encode()
    s = key.find(b"{")
    if s != -1:
        e = key.find(b"}", s + 1)
        if e != -1 and e != s + 1:
            key = key[s + 1:e]
    crc = 0
    for b in key:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC[((crc >> 8) ^ b) & 0xFF]
    return crc & 16383



def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count, taken):
    """`count` ports p whose cluster bus port p+10000 is free too."""
    ports = []
    while len(ports) < count:
        p = free_port()
        if p + 10000 > 65535 or p in taken or p in ports or not _port_free(p + 10000):
            continue
        ports.append(p)
    return ports


def wait_until(predicate, timeout, message):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (redis_py.exceptions.RedisError, OSError) as e:
            last_error = e
        time.sleep(0.05)
    raise ClusterError(f"timed out after {timeout}s waiting for {message}"
                       + (f" (last error: {last_error})" if last_error else ""))


class ClusterNodeProcess:
    """One redis-server in cluster mode; its nodes.conf survives restarts."""

    def __init__(self, port, tmp, node_timeout_ms, tls=None):
        self.port = port
        self.tls = tls
        self.dir = os.path.join(tmp, str(port))
        os.makedirs(self.dir, exist_ok=True)
        self.logfile = os.path.join(self.dir, "redis.log")
        self.node_timeout_ms = node_timeout_ms
        self.proc = None

    @property
    def name(self):
        return f"127.0.0.1:{self.port}"

    def client(self, **kwargs):
        kwargs.setdefault("socket_timeout", 10)
        return redis_client(self.port, self.tls, **kwargs)

    def port_args(self):
        args = redis_port_args(self.port, self.tls)
        if self.tls:  # TLS for the cluster bus and replication too
            args += ["--tls-cluster", "yes", "--tls-replication", "yes"]
        return args

    def start(self):
        argv = [
            REDIS_SERVER, *self.port_args(), "--bind", "127.0.0.1",
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--save", "", "--appendonly", "no", "--dir", self.dir,
            "--logfile", self.logfile, "--daemonize", "no",
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if wait_redis_ping(self.proc, self.client):
            return
        self.stop()
        raise ClusterError(f"redis-server {self.name} failed to start:\n{log_tail(self.logfile)}")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def node_id(self):
        return self.client().execute_command("CLUSTER", "MYID").decode()

    def role(self):
        return self.client().execute_command("ROLE")[0].decode()


class RedisCluster(Throwaway):
    """`masters` masters with `replicas` replicas each, joined into one cluster."""

    def __init__(self, masters=3, replicas=1, node_timeout_ms=1000, start=True, tls=None):
        """`tls`: a fixtures.TlsCertificates; the cluster then speaks TLS only."""
        self.tmp = tempfile.mkdtemp(prefix="walbust-cluster-")
        self.tls = tls
        self.master_count = masters
        self.replicas = replicas
        ports = _cluster_ports(masters * (1 + replicas), set())
        self.nodes = [ClusterNodeProcess(p, self.tmp, node_timeout_ms, tls) for p in ports]
        self._track(start)

    # -- life cycle -----------------------------------------------------------------

    def start(self):
        for n in self.nodes:
            n.start()
        argv = [REDIS_CLI, *self.cli_tls_args(), "--cluster", "create", *[n.name for n in self.nodes],
                "--cluster-replicas", str(self.replicas), "--cluster-yes"]
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        out = r.stdout.decode("utf-8", "replace")
        if r.returncode != 0 or "[OK] All 16384 slots covered" not in out:
            raise ClusterError(f"redis-cli --cluster create failed ({r.returncode}):\n{out}")
        self.wait_ok()
        if self.replicas:
            self.wait_replicas_synced()

    def cli_tls_args(self):
        if not self.tls:
            return []
        return ["--tls", "--cacert", self.tls.ca, "--cert", self.tls.client_cert, "--key", self.tls.client_key]

    def close(self):
        try:
            for n in self.nodes:
                n.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self._untrack()

    # -- state ----------------------------------------------------------------------

    @property
    def seeds(self):
        """host:port of every node, as walbust's `nodes:` takes them."""
        return [n.name for n in self.nodes]

    def node(self, port):
        return next(n for n in self.nodes if n.port == port)

    def live_nodes(self):
        return [n for n in self.nodes if n.running()]

    def cluster_nodes(self):
        """CLUSTER NODES as seen by a live node: list of dicts."""
        for n in self.live_nodes():
            try:
                text = n.client(socket_timeout=2).execute_command("CLUSTER", "NODES")
            except redis_py.exceptions.RedisError:
                continue
            if isinstance(text, bytes):
                text = text.decode()
            if isinstance(text, dict):  # redis-py may parse it already
                raise ClusterError("unexpected parsed CLUSTER NODES reply")
            out = []
            for line in text.strip().splitlines():
                f = line.split()
                out.append({"id": f[0], "addr": f[1].split("@")[0], "flags": f[2].split(","),
                            "master": f[3], "slots": f[8:]})
            return out
        raise ClusterError("no live cluster node answers CLUSTER NODES")

    def master_ports(self):
        ports = []
        for e in self.cluster_nodes():
            if "master" in e["flags"] and "fail" not in e["flags"] and e["slots"]:
                ports.append(int(e["addr"].rsplit(":", 1)[1]))
        return sorted(ports)

    def replica_of(self, master_port):
        """The port of a live replica of that master, or None."""
        entries = self.cluster_nodes()
        mid = next(e["id"] for e in entries if e["addr"].endswith(f":{master_port}"))
        for e in entries:
            if e["master"] == mid and "fail" not in e["flags"]:
                port = int(e["addr"].rsplit(":", 1)[1])
                if self.node(port).running():
                    return port
        return None

    def keyslot(self, key):
        return int(self.live_nodes()[0].client().execute_command("CLUSTER", "KEYSLOT", key))

    def master_of_slot(self, slot):
        for s in self.live_nodes()[0].client().execute_command("CLUSTER", "SLOTS"):
            if s[0] <= slot <= s[1]:
                return int(s[2][1])
        return None

    def master_of_slot_cached(self, slot):
        """master_of_slot() from one CLUSTER SLOTS reply, kept until forget_slot_cache()."""
        if getattr(self, "_slot_owner", None) is None:
            owner = [None] * 16384
            for s in self.live_nodes()[0].client().execute_command("CLUSTER", "SLOTS"):
                for i in range(s[0], s[1] + 1):
                    owner[i] = int(s[2][1])
            self._slot_owner = owner
        return self._slot_owner[slot]

    def forget_slot_cache(self):
        self._slot_owner = None

    def set_keys(self, keys, value="cached", timeout=60):
        """SETs every key on its slot's master, one pipeline per master. Retries the
        whole set (idempotent) through MOVED, ASK, failovers and down nodes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.forget_slot_cache()
                by_port = {}
                for k in keys:
                    by_port.setdefault(self.master_of_slot_cached(key_slot(k)), []).append(k)
                for port, ks in by_port.items():
                    pipe = self.node(port).client(socket_timeout=2).pipeline(transaction=False)
                    for k in ks:
                        pipe.set(k, value)
                    pipe.execute()
                return
            except (redis_py.exceptions.RedisError, OSError, StopIteration, IndexError, TypeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def existing(self, keys, timeout=60):
        """The subset of keys that exist, asked of each slot's master."""
        deadline = time.monotonic() + timeout
        keys = list(keys)
        while True:
            try:
                self.forget_slot_cache()
                by_port = {}
                for k in keys:
                    by_port.setdefault(self.master_of_slot_cached(key_slot(k)), []).append(k)
                out = set()
                for port, ks in by_port.items():
                    pipe = self.node(port).client(socket_timeout=2).pipeline(transaction=False)
                    for k in ks:
                        pipe.exists(k)
                    out.update(k for k, e in zip(ks, pipe.execute()) if e)
                return out
            except (redis_py.exceptions.RedisError, OSError, StopIteration, IndexError, TypeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def state_ok(self):
        for n in self.live_nodes():
            info = n.client(socket_timeout=2).execute_command("CLUSTER", "INFO")
            if isinstance(info, bytes):
                info = info.decode()
            if "cluster_state:ok" not in str(info):
                return False
        return True

    def wait_ok(self, timeout=60):
        wait_until(self.state_ok, timeout, "cluster_state:ok on every live node")

    def wait_replicas_synced(self, timeout=60):
        def synced():
            for n in self.live_nodes():
                info = n.client(socket_timeout=2).info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    return False
            return True

        wait_until(synced, timeout, "every replica's master_link_status:up")

    def client(self, **kwargs):
        """A small routed client (set, exists): enough for the tests' fills and checks."""
        return RoutedClient(self)

    def all_keys(self, pattern="*"):
        """Every key of every master (SCAN on each)."""
        keys = set()
        for port in self.master_ports():
            for k in self.node(port).client().scan_iter(match=pattern, count=1000):
                keys.add(k.decode())
        return keys

    # -- faults and topology changes --------------------------------------------------

    def kill_master_and_wait_failover(self, port, timeout=30):
        """SIGKILLs a master and waits until a replica serves its slots. Returns
        (new_master_port, seconds from the kill until the cluster is ok again)."""
        replica = self.replica_of(port)
        if replica is None:
            raise ClusterError(f"master {port} has no live replica to fail over to")
        self.node(port).kill9()
        started = time.monotonic()
        wait_until(lambda: self.node(replica).role() == "master", timeout,
                   f"replica {replica} promoted after master {port} was killed")
        self.wait_ok(timeout)
        return replica, time.monotonic() - started

    def wait_failover(self, victim, replica, killed_at, timeout=30):
        """After `victim` was killed: waits until `replica` is master and the cluster is
        ok. Returns (replica, seconds since killed_at)."""
        wait_until(lambda: self.node(replica).role() == "master", timeout,
                   f"replica {replica} promoted after master {victim} was killed")
        self.wait_ok(timeout)
        return replica, time.monotonic() - killed_at

    def wait_replicated(self, timeout=30):
        """Until every replica has all of its master's writes."""
        def caught_up():
            for n in self.live_nodes():
                info = n.client(socket_timeout=2).info("replication")
                if info.get("role") != "master":
                    continue
                offset = info.get("master_repl_offset", 0)
                for k, v in info.items():
                    if k.startswith("slave") and isinstance(v, dict) and v.get("offset", 0) < offset:
                        return False
            return True

        wait_until(caught_up, timeout, "replicas caught up with their masters")

    def restart_node(self, port):
        """Starts a killed node again; it rejoins (as a replica of whoever took over)."""
        self.node(port).start()
        self.wait_ok()

    def reshard(self, from_port, to_port, slots, background=False):
        """Moves `slots` slots from one master to another with redis-cli (MIGRATE of
        every key of each slot). With background=True returns the Popen."""
        src = self.node(from_port).node_id()
        dst = self.node(to_port).node_id()
        argv = [REDIS_CLI, "--cluster", "reshard", self.node(to_port).name,
                "--cluster-from", src, "--cluster-to", dst, "--cluster-slots", str(slots),
                "--cluster-yes", "--cluster-pipeline", "10"]
        if background:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        if r.returncode != 0:
            raise ClusterError(f"reshard failed:\n{r.stdout.decode('utf-8', 'replace')[-3000:]}")
        return r

    def slot_counts(self):
        counts = {}
        for s in self.live_nodes()[0].client().execute_command("CLUSTER", "SLOTS"):
            port = int(s[2][1])
            counts[port] = counts.get(port, 0) + s[1] - s[0] + 1
        return counts


class RoutedClient:
    """set/exists on a RedisCluster, routed by slot and retried through topology changes
    (redis-py's own cluster client prints tracebacks while a node is down)."""

    def __init__(self, cluster):
        self.cluster = cluster

    def set(self, key, value):
        self.cluster.set_keys([key], value)
        return True

    def exists(self, *keys):
        return len(self.cluster.existing(keys))

    def close(self):
        pass
