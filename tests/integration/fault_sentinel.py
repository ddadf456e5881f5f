"""Fault injection: Redis Sentinel failovers under load (label `fault`).

A master, a replica and three sentinels (fixtures.SentinelGroup); walbust reaches Redis
through the sentinels with `wait: {replicas: 1}`. Mid-stream the master is killed with
kill -9 (the sentinels promote the replica about 3 s later), or handed over with
SENTINEL FAILOVER. The fault suite's exact oracle (faultlib.py) then checks the master the
sentinels name: every key a committed change derives is gone, every other key survived.
The killed master, restarted on its port, comes back as a replica, after which WAIT is
satisfied again and walbust acknowledges again.
"""

import re
import time
import unittest

import faultlib
from faultlib import SLOW, EventWorkload, FaultCase, KeyPool, log, summary
from fixtures import DELETE, SentinelGroup, Walbust, wait_for


class ReplicatedKeyPool(KeyPool):
    """Generates keys on the master and waits until the replica has them too, so a
    failover cannot lose a key the oracle expects to survive."""

    def _generate(self, n, timeout=60.0):
        super()._generate(n, timeout)
        wait_for(lambda: self.client.execute_command("WAIT", 1, 1000) >= 1, timeout=60,
                 message="the replica to acknowledge the generated keys")


class NamedMasterClient:
    """set/exists on the master the sentinels name at each call. A pooled client may still
    write to a master being demoted, whose data the resync then replaces: a marker SET
    there vanishes without walbust, and Walbust.sync() would return too early."""

    def __init__(self, group):
        self.group = group

    def set(self, key, value):
        return self.group.current_master().client().set(key, value)

    def exists(self, key):
        return self.group.current_master().client().exists(key)

    def close(self):
        pass


class SentinelRedis:
    """What the Walbust driver needs from a Redis (url, client) for a sentinel target."""

    def __init__(self, group):
        self.group = group
        self.url = ""

    def client(self, **kwargs):
        return NamedMasterClient(self.group)


class SentinelFailoverTest(FaultCase):
    def setUp(self):
        super().setUp()
        self.group = SentinelGroup()
        self.addCleanup(self.group.close)
        self.r = self.group.client()

    def start_sentinel_walbust(self):
        target = {"sentinel": {"master": self.group.name, "nodes": self.group.nodes},
                  "wait": {"replicas": 1, "timeout": "200ms"}, "timeout": "1s"}
        # Built here: make_walbust's merge would drop the DELETE of the default redis: section.
        w = Walbust(self.pg, SentinelRedis(self.group), rules=[self.rules_path],
                    config={"redis": DELETE, "targets": {"ha": target}, "metrics": {"listen": ""}})
        self.addCleanup(self._finish, w)
        self.walbust = w
        w.start()
        w.wait_streaming(timeout=30 * SLOW)
        w.sync(timeout=30 * SLOW)
        return w

    def run_failover(self, name, seed, fault):
        pool = ReplicatedKeyPool(self.r, f"{name[:6]}-", chunk=4000)
        pool.ensure(8000)
        w = self.start_sentinel_walbust()
        mark = faultlib.audit_mark(self.pg)
        work = EventWorkload(self.pg, pool, seed=seed).start()
        self.addCleanup(work.close)
        work.wait_commits(30, timeout=60 * SLOW)
        old = self.group.current_master()
        fault(old)
        wait_for(lambda: self.group.named_master() and self.group.named_master()[1] != old.port,
                 timeout=60 * SLOW, message="the sentinels to promote the replica")
        work.wait_commits(20, timeout=60 * SLOW)
        work.stop()
        w.sync(timeout=120 * SLOW)
        # The oracle reads the master the sentinels name, never a demoted master that may
        # still serve its old data while it resynchronises as a replica.
        self.r = self.group.current_master().client()
        keys = self.check_oracle(pool, mark, name)
        log(f"{name}: workload {work.stats()}")
        summary(name, 1, keys, self.lost)
        self.assertTrue(w.running())
        self.assertRegex(w.log(), r"master is 127\.0\.0\.1:\d+ \(named by sentinel")
        return w, old

    def test_kill_9_of_the_master_mid_stream_loses_no_invalidation(self):
        def fault(old):
            old.kill9()
            # Restarted on its port it comes back empty; the sentinels make it a replica
            # of the promoted one, and WAIT is satisfied again.
            time.sleep(5)
            old.start()

        w, old = self.run_failover("sentinel-kill9", 7101, fault)
        wait_for(lambda: old.client().info("replication")["role"] == "slave", timeout=60 * SLOW,
                 message="the old master to come back as a replica")
        masters = set(re.findall(r"master is (127\.0\.0\.1:\d+)", w.log()))
        self.assertEqual(len(masters), 2, f"the log names the old and the new master: {masters}")

    def test_sentinel_failover_mid_stream_loses_no_invalidation(self):
        def fault(old):
            self.group.failover()

        self.run_failover("sentinel-failover", 7201, fault)


if __name__ == "__main__":
    unittest.main()
