"""Fault injection: processes die and restart under load (ctest label `fault`).

- walbust killed with SIGKILL at random points while it works through a backlog, and
  while it streams one large transaction, then restarted;
- PostgreSQL stopped with `pg_ctl stop -m immediate` (a crash) and started again;
- Redis restarted (SIGTERM) or killed (SIGKILL) while walbust deletes; Redis runs with
  an fsync'ed append-only file, so the cache survives the restart as a production cache
  would and a delete Redis confirmed is never undone by the restart.

After every scenario walbust catches up and the oracle of faultlib.py checks that every
key derived from a committed change is gone (duplicates allowed, losses not). While
Redis is down, no transaction committed after it went down may be acknowledged.
Repetitions: WALBUST_FAULT_REPEAT (default below).
"""

import random
import time
import unittest

import fixtures
import faultlib
from faultlib import SLOW, FaultCase, EventWorkload, KeyPool, log, summary

REPEAT = faultlib.repeat(3)


class Kill9Test(FaultCase):
    def test_kill9_during_backlog(self):
        """SIGKILL at a random point of catching up a backlog, twice, then catch up."""
        rng = random.Random(1001)
        pool = KeyPool(self.r, "kb-")
        work = EventWorkload(self.pg, pool, seed=1002)
        self.addCleanup(work.close)
        w = self.start_walbust()
        w.sync(timeout=30 * SLOW)
        keys = kills = with_replay = 0
        for rep in range(REPEAT):
            self.assertEqual(w.stop(timeout=15 * SLOW), 0, w.log_tail())
            mark = faultlib.audit_mark(self.pg)
            work.run(300)
            for _ in range(2):
                w.start()
                w.wait_for_log(r"streaming from slot", timeout=30 * SLOW)
                # A random point of the catch-up (which takes a few hundred ms).
                time.sleep(rng.uniform(0.0, 0.5))
                w.kill9()
                kills += 1
                # The state file is replaced atomically: a kill never leaves it damaged.
                state = faultlib.read_state(w)
                self.assertIsNotNone(state)
                self.assertEqual(state["slot"], w.slot)
                fixtures.wait_for(lambda: not self.pg.slot_info()["active"], 10 * SLOW,
                                  message="slot released after SIGKILL")
                if self.pg.pending_xids():
                    with_replay += 1
            w.start()
            w.wait_streaming(timeout=30 * SLOW)
            w.sync(timeout=60 * SLOW)
            keys += self.check_oracle(pool, mark, f"kill9-backlog rep {rep}")
        log(f"kill9-backlog: {kills} kills, {with_replay} left transactions to resend;"
            f" workload {work.stats()}")
        summary("kill9-backlog", REPEAT, keys, self.lost, kills=kills,
                kills_with_replay=with_replay)
        self.assertGreater(with_replay, 0, "no kill left transactions to resend")

    def test_kill9_during_large_transaction(self):
        """SIGKILL at random points while a 40k-row transaction streams, then catch up."""
        rng = random.Random(2001)
        pool = KeyPool(self.r, "kl-", chunk=5000)
        w = self.start_walbust()
        w.sync(timeout=30 * SLOW)
        rows = 40_000
        keys = kills = mid_txn = 0
        for rep in range(REPEAT):
            self.assertEqual(w.stop(timeout=15 * SLOW), 0, w.log_tail())
            mark = faultlib.audit_mark(self.pg)
            # Alternately a large INSERT and a large UPDATE of the rows inserted before.
            if rep % 2 == 0:
                xid = faultlib.big_insert(self.pg, pool, rows, grp=1000 + rep)
            else:
                xid, n = faultlib.big_update(self.pg, pool, 1000 + rep - 1)
                self.assertEqual(n, rows)
            for _ in range(2):
                w.start()
                w.wait_for_log(r"streaming from slot", timeout=30 * SLOW)
                time.sleep(rng.uniform(0.1, 1.5 * SLOW))
                w.kill9()
                kills += 1
                fixtures.wait_for(lambda: not self.pg.slot_info()["active"], 10 * SLOW,
                                  message="slot released after SIGKILL")
                if xid in self.pg.pending_xids():
                    mid_txn += 1
            w.start()
            w.wait_streaming(timeout=30 * SLOW)
            w.sync(timeout=120 * SLOW)
            keys += self.check_oracle(pool, mark, f"kill9-large-transaction rep {rep}")
        summary("kill9-large-transaction", REPEAT, keys, self.lost, kills=kills,
                kills_mid_transaction=mid_txn)
        self.assertGreater(mid_txn, 0, "no kill landed while the large transaction was pending")


class SigtermTest(FaultCase):
    def test_sigterm_during_large_transaction(self):
        """SIGTERM while a large transaction streams in: exit 0 promptly, lose nothing.

        The walsender is busy sending the transaction when walbust ends the stream; the
        shutdown must still be bounded (the README promises about 8 s for in-flight
        deletes plus the final acknowledgement).
        """
        rng = random.Random(2501)
        pool = KeyPool(self.r, "st-", chunk=5000)
        w = self.start_walbust()
        w.sync(timeout=30 * SLOW)
        rows = 40_000
        keys = stops = mid_txn = 0
        slowest = 0.0
        for rep in range(REPEAT):
            self.assertEqual(w.stop(timeout=15 * SLOW), 0, w.log_tail())
            mark = faultlib.audit_mark(self.pg)
            xid = faultlib.big_insert(self.pg, pool, rows, grp=2000 + rep)
            w.start()
            w.wait_for_log(r"streaming from slot", timeout=30 * SLOW)
            time.sleep(rng.uniform(0.05, 0.6 * SLOW))
            t0 = time.monotonic()
            code = w.stop(timeout=20 * SLOW)
            took = time.monotonic() - t0
            slowest = max(slowest, took)
            stops += 1
            self.assertEqual(code, 0, w.log_tail())
            self.assertLess(took, 12 * SLOW, f"SIGTERM took {took:.1f}s\n{w.log_tail()}")
            if xid in self.pg.pending_xids():
                mid_txn += 1
            w.start()
            w.wait_streaming(timeout=30 * SLOW)
            w.sync(timeout=120 * SLOW)
            keys += self.check_oracle(pool, mark, f"sigterm-large-transaction rep {rep}")
        log(f"sigterm-large-transaction: slowest exit {slowest:.2f}s")
        summary("sigterm-large-transaction", REPEAT, keys, self.lost, stops=stops,
                stops_mid_transaction=mid_txn)


class PostgresCrashTest(FaultCase):
    def test_postgres_immediate_stop_and_start(self):
        """`pg_ctl stop -m immediate` under load, a random downtime, start; repeated."""
        rng = random.Random(3001)
        pool = KeyPool(self.r, "pg-")
        # JSON logs: every line must be one object, so output that bypasses the logger
        # (and would break a log shipper) shows up as a stray line.
        w = self.start_walbust(config={"log": {"format": "json"}})
        w.sync(timeout=30 * SLOW)
        mark = faultlib.audit_mark(self.pg)
        work = EventWorkload(self.pg, pool, seed=3002).start()
        self.addCleanup(work.close)
        for rep in range(REPEAT):
            work.wait_commits(20, timeout=60 * SLOW)
            time.sleep(rng.uniform(0.0, 1.0))  # a random point of the load
            self.pg.stop("immediate")
            time.sleep(rng.uniform(0.2, 3.0))  # the outage
            self.pg.start()
            w.wait_for(lambda: len(self.log_records(r"postgres: streaming again")) > rep,
                       timeout=60 * SLOW, message=f"walbust streaming again after crash {rep}")
        work.wait_commits(20, timeout=60 * SLOW)
        work.stop()
        w.sync(timeout=60 * SLOW)
        keys = self.check_oracle(pool, mark, "pg-immediate")
        log(f"pg-immediate: workload {work.stats()}")
        summary("pg-immediate", REPEAT, keys, self.lost, in_doubt_commits=work.in_doubt)

        # Each outage: one warning with its cause, one info line when it ends, counted.
        records, stray = self.json_log()
        warns = [r["msg"] for r in records
                 if r.get("level") in ("warn", "warning") and "postgres" in r.get("msg", "")]
        infos = [r["msg"] for r in records
                 if r.get("level") == "info" and "postgres: streaming again" in r.get("msg", "")]
        reconnects = faultlib.metric(self.metrics(), "walbust_reconnects_total",
                                     target="postgres")
        log(f"pg-immediate: {len(warns)} warnings, {len(infos)} recovery lines,"
            f" walbust_reconnects_total{{target=postgres}} = {reconnects:.0f},"
            f" {len(stray)} lines outside the JSON log")
        self.assertTrue(w.running())
        self.assertEqual(len(infos), REPEAT, "\n".join(infos))
        # The replication connection's warning names the cause.
        causes = [m for m in warns if "reconnecting with backoff" in m]
        self.assertEqual(len(causes), REPEAT, "\n".join(warns))
        self.assertTrue(all("server closed the connection" in m for m in causes), causes)
        self.assertGreaterEqual(reconnects, REPEAT)
        with self.subTest("one warning per PostgreSQL outage"):
            self.assertEqual(len(warns), REPEAT, "\n".join(warns))
        with self.subTest("every log line is a JSON object"):
            self.assertEqual(stray, [], "log lines that bypassed the JSON logger")


class RedisRestartTest(FaultCase):
    # The cache survives a restart, as a production cache with persistence would; with
    # appendfsync always, every delete Redis confirmed is on disk before the reply.
    redis_args = ["--appendonly", "yes", "--appendfsync", "always"]

    def test_redis_restart_and_kill(self):
        """Redis restarted or SIGKILLed under load; no acknowledgement while it is down."""
        rng = random.Random(4001)
        pool = KeyPool(self.r, "rr-", chunk=4000)
        w = self.start_walbust()
        w.sync(timeout=30 * SLOW)
        mark, work = self.start_workload(pool, 4002)
        checked_acks = 0
        for rep in range(REPEAT):
            pool.ensure(8000)  # the workload must not need Redis while it is down
            work.wait_commits(20, timeout=60 * SLOW)
            time.sleep(rng.uniform(0.0, 0.5))
            self.r.close()
            if rep % 2 == 0:
                self.redis.stop()
            else:
                self.redis.kill9()
            t_down = time.monotonic()
            work.wait_commits(5, timeout=60 * SLOW)
            time.sleep(rng.uniform(0.5, 2.5))  # the outage
            checked_acks += self.assert_unacknowledged_since(t_down, work, f"rep {rep}")
            self.redis.start()
            w.wait_for(lambda: len(self.log_records(r"redis .*reachable again")) > rep,
                       timeout=60 * SLOW, message=f"walbust reconnected to Redis after {rep}")
            self.advance_oracle_slot()
        work.stop()
        w.sync(timeout=60 * SLOW)
        keys = self.check_oracle(pool, mark, "redis-restart")
        log(f"redis-restart: workload {work.stats()}; {checked_acks} transactions committed"
            " during outages checked unacknowledged")

        warns = self.log_records(r" warning redis .*retrying with backoff")
        infos = self.log_records(r" info redis .*reachable again")
        samples = self.metrics()
        reconnects = sum(v for n, ls, v in samples
                         if n == "walbust_reconnects_total" and ls.get("target") != "postgres")
        log(f"redis-restart: {len(warns)} warnings, {len(infos)} recovery lines,"
            f" Redis walbust_reconnects_total = {reconnects:.0f}")
        summary("redis-restart", REPEAT, keys, self.lost, unacked_checked=checked_acks)
        self.assertEqual(len(warns), REPEAT, "\n".join(warns))
        self.assertEqual(len(infos), REPEAT, "\n".join(infos))
        self.assertEqual(reconnects, REPEAT)
        self.assertEqual(self.log_records(r" warning postgres: "), [],
                         "the Redis outage must not cost the replication connection")
        self.assertTrue(w.running())


if __name__ == "__main__":
    unittest.main()
