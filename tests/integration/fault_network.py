"""Fault injection: the network between walbust and each server is cut (label `fault`).

walbust reaches PostgreSQL and Redis through tcp_proxy.TcpProxy; the workload and the
oracle talk to the servers directly, so only walbust's connections suffer:

- reset: every connection is aborted with an RST, and new ones are refused for a moment;
- blackhole: nothing is forwarded for a few seconds (sockets stay open), then the
  network heals and the buffered bytes flow on;
- blackhole past wal_sender_timeout: the server gives up on the silent walsender while
  the proxy holds the client's socket open; the close reaches walbust when the network
  heals;
- stranded: walbust's replication connection stays silent forever (a NAT or firewall
  lost the flow) while new connections work. Only walbust's own liveness check can
  notice; it must, or invalidation stops for good.

After each scenario the oracle of faultlib.py checks that nothing was lost; while Redis is
cut off, nothing committed since may be acknowledged.
"""

import datetime
import random
import time
import unittest

import faultlib
from faultlib import SLOW, EventWorkload, FaultCase, KeyPool, log, summary
from tcp_proxy import TcpProxy

REPEAT = faultlib.repeat(3)


class ProxiedCase(FaultCase):
    def setUp(self):
        super().setUp()
        self.pg_proxy = TcpProxy(self.pg.port)
        self.addCleanup(self.pg_proxy.close)
        self.redis_proxy = TcpProxy(self.redis.port)
        self.addCleanup(self.redis_proxy.close)

    def start_proxied(self, config=None):
        cfg = {
            "postgres": {"dsn": f"host=127.0.0.1 port={self.pg_proxy.port}"
                                f" dbname={self.pg.DATABASE} user={self.pg.ROLE}"},
            "redis": {"url": f"{self.redis.url.split(':')[0]}://127.0.0.1:{self.redis_proxy.port}/0"},
        }
        if self.certs:
            cfg["redis"]["tls"] = self.certs.client_tls()
        w = self.make_walbust(faultlib.fixtures.deep_merge(cfg, config or {}))
        w.start()
        w.wait_streaming(timeout=30 * SLOW)
        w.sync(timeout=30 * SLOW)
        return w

    def scenario(self, name, fault, seed, ack_check=False, config=None):
        """Runs `fault(rep, rng, work)` REPEAT times under load, then checks the oracle."""
        rng = random.Random(seed)
        pool = KeyPool(self.r, f"{name[:6]}-", chunk=4000)
        w = self.start_proxied(config)
        mark, work = self.start_workload(pool, seed + 1, oracle=ack_check)
        extra = {}
        for rep in range(REPEAT):
            pool.ensure(8000)
            work.wait_commits(20, timeout=60 * SLOW)
            time.sleep(rng.uniform(0.0, 0.5))
            for k, v in (fault(rep, rng, work) or {}).items():
                extra[k] = extra.get(k, 0) + v
            if ack_check:
                self.advance_oracle_slot()
        work.wait_commits(10, timeout=60 * SLOW)
        work.stop()
        w.sync(timeout=90 * SLOW)
        keys = self.check_oracle(pool, mark, name)
        log(f"{name}: workload {work.stats()}; proxies: pg {self.pg_proxy.accepted} accepted,"
            f" redis {self.redis_proxy.accepted} accepted")
        summary(name, REPEAT, keys, self.lost, **extra)
        self.assertTrue(w.running())
        return w

    def wait_pg_streaming_again(self, count):
        self.walbust.wait_for(
            lambda: len(self.log_records(r"postgres: streaming again")) >= count,
            timeout=60 * SLOW, message=f"walbust streaming again ({count} times)")

    def wait_redis_again(self, count):
        self.walbust.wait_for(
            lambda: len(self.log_records(r"redis .*reachable again")) >= count,
            timeout=60 * SLOW, message=f"Redis reachable again ({count} times)")


class NetworkCutTest(ProxiedCase):
    def test_postgres_connection_reset(self):
        def fault(rep, rng, work):
            self.pg_proxy.refuse(True)
            n = self.pg_proxy.reset()
            time.sleep(rng.uniform(0.0, 2.0))  # new connections refused meanwhile
            self.pg_proxy.refuse(False)
            self.wait_pg_streaming_again(rep + 1)
            return {"connections_reset": n}

        self.scenario("net-pg-reset", fault, seed=6001)
        warns = self.log_records(r" warning postgres: ")
        self.assertEqual(len(self.log_records(r" info postgres: streaming again")), REPEAT)
        with self.subTest("one warning per outage"):
            self.assertEqual(len(warns), REPEAT, "\n".join(warns))

    def test_postgres_blackhole_then_heal(self):
        def fault(rep, rng, work):
            self.pg_proxy.blackhole()
            n = work.committed
            time.sleep(rng.uniform(2.0, 6.0))
            self.pg_proxy.heal()
            return {"commits_during_blackhole": work.committed - n}

        self.scenario("net-pg-blackhole", fault, seed=6101)

    def test_redis_connection_reset(self):
        def fault(rep, rng, work):
            self.redis_proxy.refuse(True)
            t_cut = time.monotonic()
            n = self.redis_proxy.reset()
            work.wait_commits(3, timeout=30 * SLOW)
            time.sleep(rng.uniform(0.0, 2.0))
            checked = self.assert_unacknowledged_since(t_cut, work, f"reset {rep}")
            self.redis_proxy.refuse(False)
            self.wait_redis_again(rep + 1)
            return {"connections_reset": n, "unacked_checked": checked}

        self.scenario("net-redis-reset", fault, seed=6201, ack_check=True)
        warns = self.log_records(r" warning redis ")
        self.assertEqual(len(warns), REPEAT, "\n".join(warns))

    def test_redis_blackhole_then_heal(self):
        def fault(rep, rng, work):
            self.redis_proxy.blackhole()
            t_cut = time.monotonic()
            work.wait_commits(3, timeout=30 * SLOW)
            time.sleep(rng.uniform(3.0, 6.0))  # longer than redis.timeout (2s)
            checked = self.assert_unacknowledged_since(t_cut, work, f"blackhole {rep}")
            self.redis_proxy.heal()
            self.wait_redis_again(rep + 1)
            return {"unacked_checked": checked}

        self.scenario("net-redis-blackhole", fault, seed=6301, ack_check=True)
        warns = self.log_records(r" warning redis ")
        self.assertEqual(len(warns), REPEAT, "\n".join(warns))


class RedisOverTlsNetworkCutTest(ProxiedCase):
    """The Redis network faults again with TLS to Redis: a reset or a blackhole in the
    middle of a TLS session loses nothing and acknowledges nothing meanwhile."""

    redis_tls = True

    def test_redis_connection_reset_over_tls(self):
        NetworkCutTest.test_redis_connection_reset(self)

    def test_redis_blackhole_then_heal_over_tls(self):
        NetworkCutTest.test_redis_blackhole_then_heal(self)


def intervals(times):
    return [b - a for a, b in zip(times, times[1:])]


class BackoffTest(ProxiedCase):
    def assert_backoff(self, times, what):
        """Retry times grow exponentially with jitter and never spin."""
        d = intervals(times)
        log(f"backoff {what}: {len(times)} attempts, intervals"
            f" {', '.join(f'{x:.2f}' for x in d)} s")
        self.assertGreaterEqual(len(d), 3, f"{what}: too few retries to judge: {d}")
        self.assertLessEqual(len(times), 15, f"{what}: retries too often: {d}")
        self.assertGreaterEqual(d[-1], 3 * d[0], f"{what}: retry intervals do not grow: {d}")
        ratios = [b / a for a, b in zip(d, d[1:]) if a > 0]
        self.assertFalse(all(1.95 <= r <= 2.05 for r in ratios),
                         f"{what}: intervals double exactly, no jitter: {d}")

    def test_reconnect_backoff(self):
        """Exponential backoff with jitter: PostgreSQL 0.5 s doubling, Redis 0.1 s doubling."""
        pool = KeyPool(self.r, "bo-")
        w = self.start_proxied({"log": {"level": "debug"}})
        work = EventWorkload(self.pg, pool, seed=6601)
        self.addCleanup(work.close)

        # Redis: new connections refused for 9 s; walbust notices at its next delete.
        self.redis_proxy.refuse(True)
        self.redis_proxy.reset()
        t0 = time.monotonic()
        work.run(3)
        time.sleep(9)
        self.redis_proxy.refuse(False)
        self.wait_redis_again(1)
        self.assert_backoff([t for t in self.redis_proxy.attempts if t > t0], "redis")

        # PostgreSQL: down for 10 s; each failed attempt is logged at debug.
        self.pg.stop("fast")
        time.sleep(10)
        self.pg.start()
        self.wait_pg_streaming_again(1)
        records = self.log_records(r" (warning|debug) postgres: (?!cannot read slot)")
        stamps = [datetime.datetime.strptime(r[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
                  for r in records]
        self.assert_backoff(stamps, "postgres")
        work.run(5)
        w.sync(timeout=30 * SLOW)


class NetworkTimeoutTest(ProxiedCase):
    # The server gives up on a silent client after 5 s, as a busy production server
    # tuned for fast failover might.
    wal_sender_timeout = "5s"

    def test_postgres_blackhole_past_wal_sender_timeout(self):
        def fault(rep, rng, work):
            self.pg_proxy.blackhole()
            time.sleep(rng.uniform(7.0, 9.0))
            self.pg_proxy.heal()
            self.wait_pg_streaming_again(rep + 1)

        self.scenario("net-pg-blackhole-past-timeout", fault, seed=6401)

    def test_postgres_connection_stranded(self):
        """The replication connection goes silent for good; new connections work.

        PostgreSQL ends its side after wal_sender_timeout (5 s). walbust must notice the
        silence by itself and reconnect (as PostgreSQL's own walreceiver does with
        wal_receiver_timeout, 60 s by default): the test allows 60 s. SIGTERM must still
        end walbust promptly while a connection is dead.
        """
        pool = KeyPool(self.r, "strand-")
        w = self.start_proxied()
        mark = faultlib.audit_mark(self.pg)
        work = EventWorkload(self.pg, pool, seed=6502)
        self.addCleanup(work.close)
        work.run(20)
        stranded = self.pg_proxy.strand()
        self.assertGreaterEqual(stranded, 1)
        t0 = time.monotonic()
        work.run(20)
        try:
            w.sync(timeout=60 * SLOW)
            detected = time.monotonic() - t0
        except AssertionError:
            detected = None
        t_stop = time.monotonic()
        try:
            code = w.stop(timeout=15 * SLOW)
        except AssertionError:
            code = "hung"  # the fixture killed it with SIGKILL
        stop_took = time.monotonic() - t_stop
        # Whatever happened, a restart (new connections work) must lose nothing.
        w.start()
        w.wait_streaming(timeout=30 * SLOW)
        work.run(10)
        w.sync(timeout=60 * SLOW)
        keys = self.check_oracle(pool, mark, "net-pg-stranded")
        log(f"net-pg-stranded: {stranded} connections stranded; silence noticed after"
            f" {'never (60 s)' if detected is None else f'{detected:.1f}s'};"
            f" SIGTERM: {code} after {stop_took:.1f}s")
        summary("net-pg-stranded", 1, keys, self.lost,
                detected_within_60s=int(detected is not None), sigterm_exit=code)
        with self.subTest("walbust notices a silent replication connection"):
            self.assertIsNotNone(detected, "walbust did not notice within 60 s that its"
                                 " replication connection went silent; invalidation stopped")
        with self.subTest("SIGTERM exits promptly while a connection is dead"):
            self.assertEqual(code, 0, f"SIGTERM with a dead PostgreSQL connection: {code}"
                             f" after {stop_took:.1f}s")


if __name__ == "__main__":
    unittest.main()
