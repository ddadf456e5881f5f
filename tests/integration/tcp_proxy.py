"""A small TCP proxy on 127.0.0.1 that the fault tests put between walbust and a server.

walbust connects to the proxy's port instead of the server's; the test then cuts the
network in the two ways that matter to a client:

- reset(): every open connection is aborted with a TCP RST on both sides, as when a
  firewall or a restarting load balancer drops its state. The client sees an error at
  once. refuse(True) additionally answers new connections with an RST until refuse(False).
- blackhole(): the proxy stops reading and forwarding in both directions but keeps every
  socket open, as when a route or a NAT mapping disappears. Nothing fails: the client
  only notices through its own timeouts. New connections are accepted (the kernel
  completes the handshake) and held silent. heal() resumes forwarding: data written
  meanwhile sits in the kernel buffers and flows on, like TCP retransmissions after a
  partition ends.
- strand(): the connections open now stay silent forever (sockets open, nothing
  forwarded) while new ones work, as when a NAT mapping or a stateful firewall loses
  the flow of a long-lived connection. Only the client's own liveness checks can tell.

Threads, not asyncio: two pump threads per connection keep the code obvious, and the
number of connections in a test is small.
"""

import errno
import select
import socket
import struct
import threading
import time


def _abort(sock):
    """Closes a socket with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Pair:
    """One proxied connection: the client's socket and ours to the server."""

    def __init__(self, proxy, client, server):
        self.proxy = proxy
        self.client = client
        self.server = server
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.stranded = False  # see TcpProxy.strand()

    def start(self):
        for src, dst, name in ((self.client, self.server, "c->s"), (self.server, self.client, "s->c")):
            threading.Thread(target=self._pump, args=(src, dst), name=f"proxy-{name}",
                             daemon=True).start()

    def abort(self):
        """Closes both sides with an RST."""
        with self.lock:
            if self.closed.is_set():
                return
            self.closed.set()
        _abort(self.client)
        _abort(self.server)

    def _close(self):
        """Closes both sides with a FIN: data already forwarded is still delivered."""
        with self.lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for s in (self.client, self.server):
            try:
                s.close()
            except OSError:
                pass

    def _pump(self, src, dst):
        proxy = self.proxy
        try:
            while not self.closed.is_set():
                # While blackholed nothing is read: the peer's data piles up in the
                # kernel buffers and is forwarded after heal(), in order.
                if self.stranded:
                    time.sleep(0.1)
                    continue
                if not proxy._forwarding.wait(0.1):
                    continue
                try:
                    ready, _, _ = select.select([src], [], [], 0.1)
                except (OSError, ValueError):
                    break
                if not ready:
                    continue
                if self.stranded or not proxy._forwarding.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    # A clean close (FIN) is passed on as a clean close of both sides,
                    # so a final error message the server sent is not lost to an RST.
                    self._close()
                    return
                dst.sendall(data)
                proxy.bytes_forwarded += len(data)
        except OSError:
            pass
        # An error on one side (e.g. an RST from the server) resets the other.
        self.abort()


class TcpProxy:
    """Forwards 127.0.0.1:self.port to 127.0.0.1:target_port."""

    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._refusing = False
        self._closing = threading.Event()
        self._pairs = []
        self._lock = threading.Lock()
        self.accepted = 0
        self.refused = 0
        self.attempts = []  # time.monotonic() of every incoming connection
        self.resets = 0
        self.bytes_forwarded = 0
        self._thread = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        self._thread.start()

    def __repr__(self):
        return f"TcpProxy(127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _accept_loop(self):
        while not self._closing.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.1)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError as e:
                if e.errno in (errno.EBADF, errno.EINVAL):
                    return
                continue
            self.attempts.append(time.monotonic())
            if self._refusing:
                self.refused += 1
                _abort(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                # The server is down: the client sees its connection reset, as it would
                # see a refused connection without the proxy.
                self.refused += 1
                _abort(client)
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = _Pair(self, client, server)
            with self._lock:
                self._pairs = [p for p in self._pairs if not p.closed.is_set()]
                self._pairs.append(pair)
            self.accepted += 1
            pair.start()

    # -- faults ---------------------------------------------------------------------

    def connections(self):
        with self._lock:
            return [p for p in self._pairs if not p.closed.is_set()]

    def reset(self):
        """Aborts every open connection with an RST on both sides; returns how many."""
        pairs = self.connections()
        for p in pairs:
            p.abort()
        self.resets += len(pairs)
        return len(pairs)

    def refuse(self, on=True):
        """While on, new connections are reset right after the handshake."""
        self._refusing = on

    def blackhole(self):
        """Stops forwarding in both directions; sockets stay open."""
        self._forwarding.clear()

    def heal(self):
        """Forwards again (after blackhole)."""
        self._forwarding.set()

    @property
    def blackholed(self):
        return not self._forwarding.is_set()

    def strand(self):
        """Silences the open connections for good; new ones are forwarded. Returns how many."""
        pairs = self.connections()
        for p in pairs:
            p.stranded = True
        return len(pairs)

    def wait_connections(self, n=1, timeout=30.0):
        """Waits until at least n connections are open; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pairs = self.connections()
            if len(pairs) >= n:
                return pairs
            time.sleep(0.02)
        raise AssertionError(f"{self}: fewer than {n} connections after {timeout}s")

    def close(self):
        self._closing.set()
        self._forwarding.set()
        try:
            self._listener.close()
        except OSError:
            pass
        for p in self.connections():
            p.abort()
