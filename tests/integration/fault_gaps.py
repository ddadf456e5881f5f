"""Fault injection: replication gaps (README "Guarantees and failure modes"; ctest label `fault`).

walbust records the slot it streams from in state_dir/walbust-SLOT.state. When the slot
is missing although the state file says walbust used it, or PostgreSQL invalidated it
(wal_status = lost, here through a tiny max_slot_wal_keep_size, WAL switches and a
CHECKPOINT while walbust is stopped), changes were missed. walbust must never recreate
the slot silently:

- on_gap: fail        exit 3, say what happened and how to recover, leave the slot alone;
- on_gap: flush_rules delete every key the rules could produce, create a new slot, go on;
- on_gap: flushdb     FLUSHDB, create a new slot, go on.

A state file from another database system (another system identifier) is refused with
exit 1. The oracle: after a flush, no key derived from a missed change survives, keys
the rules cannot produce survive flush_rules, and streaming continues without loss.
"""

import os
import time
import unittest

import fixtures
import faultlib
from faultlib import SLOW, EventWorkload, FaultCase, KeyPool, read_state, summary

REPEAT = faultlib.repeat(3)

# Keys no rule can produce: they must survive on_gap: flush_rules. Some look like rule
# keys with a different separator or prefix, so an over-wide pattern would catch them.
UNRELATED = ["unrelated:1", "session:abc", "ev-ins:x", "ev:ins", "Ev:ins:x", "xev:ins:1",
             "walbust_marker", "walbust_markerX", "ev:insert"]


def invalidate_slot(pg, slot="walbust", timeout=60):
    """Generates WAL past max_slot_wal_keep_size and checkpoints until the slot is lost."""
    pg.execute("CREATE TABLE IF NOT EXISTS fault_noise (id serial, pad text)")
    deadline = time.monotonic() + timeout
    while True:
        pg.execute("INSERT INTO fault_noise (pad) SELECT repeat('n', 100)"
                   " FROM generate_series(1, 1000)")
        pg.execute("SELECT pg_switch_wal()", user="postgres")
        pg.execute("CHECKPOINT", user="postgres")
        info = pg.slot_info(slot)
        if info is not None and info["wal_status"] == "lost":
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"slot {slot} not invalidated: {info}")


class GapCase(FaultCase):
    # One 16 MB segment may be kept for slots; anything older is removed at checkpoint.
    pg_settings = {"max_slot_wal_keep_size": "'16MB'", "wal_keep_size": "0"}

    def system_identifier(self, pg=None):
        return str((pg or self.pg).query(
            "SELECT system_identifier FROM pg_control_system()")[0][0])

    def assert_gap_exit(self, w, what):
        """walbust exits 3 with the cause and the recovery steps; returns the log."""
        code = w.wait(timeout=60 * SLOW)
        text = w.log()
        self.assertEqual(code, 3, f"{what}: expected exit 3 (gap)\n{w.log_tail()}")
        self.assertRegex(text, r"replication gap", text)
        self.assertIn("pg_drop_replication_slot", text, "the recovery steps are missing")
        self.assertIn(os.path.join(w.state_dir, f"walbust-{w.slot}.state"), text)
        return text


class GapFailTest(GapCase):
    def test_state_file_records_the_slot(self):
        w = self.start_walbust()
        EventWorkload(self.pg, KeyPool(self.r, "sf-"), seed=7001).run(30)
        w.sync(timeout=30 * SLOW)
        self.assertEqual(w.stop(timeout=15 * SLOW), 0)
        state = read_state(w)
        self.assertEqual(state["system_identifier"], self.system_identifier())
        self.assertEqual(state["slot"], "walbust")
        self.assertEqual(fixtures.Lsn.parse(state["acknowledged_lsn"]),
                         self.pg.confirmed_flush_lsn(),
                         "the state file's LSN differs from the slot's confirmed_flush_lsn")
        self.assertEqual(oct(os.stat(os.path.join(w.state_dir, "walbust-walbust.state"))
                             .st_mode & 0o777), "0o600")

    def test_missing_slot_fails_with_exit_3(self):
        w = self.start_walbust()
        w.sync(timeout=30 * SLOW)
        self.assertEqual(w.stop(timeout=15 * SLOW), 0)
        before = read_state(w)
        self.pg.drop_slot("walbust")
        EventWorkload(self.pg, KeyPool(self.r, "ms-"), seed=7101).run(10)  # missed
        for attempt in range(2):  # and again: a restart loop must not "heal" the gap
            w.start()
            text = self.assert_gap_exit(w, f"missing slot, start {attempt}")
            self.assertRegex(text, r"missing")
            self.assertIsNone(self.pg.slot_info("walbust"), "the slot was recreated")
            with self.subTest("the refused start keeps the state file", start=attempt):
                self.assertEqual(read_state(w), before)
        summary("gap-missing-fail", 2, 0, 0, exit_code=3)

    def test_lost_slot_fails_with_exit_3(self):
        w = self.start_walbust()
        w.sync(timeout=30 * SLOW)
        self.assertEqual(w.stop(timeout=15 * SLOW), 0)
        EventWorkload(self.pg, KeyPool(self.r, "ls-"), seed=7201).run(10)
        invalidate_slot(self.pg)
        w.start()
        text = self.assert_gap_exit(w, "lost slot")
        self.assertRegex(text, r"lost|invalidated")
        info = self.pg.slot_info("walbust")
        self.assertIsNotNone(info, "on_gap: fail must leave the slot for inspection")
        self.assertEqual(info["wal_status"], "lost")
        summary("gap-lost-fail", 1, 0, 0, exit_code=3)

    def test_slot_lost_while_running_and_redis_down(self):
        """Redis is down, so nothing is acknowledged and the slot retains WAL until
        PostgreSQL invalidates it under walbust's feet (terminating its walsender)."""
        w = self.start_walbust()
        w.sync(timeout=30 * SLOW)
        self.r.close()
        self.redis.kill9()
        # (the workload's key pool needs Redis: plain SQL changes are enough here)
        self.pg.execute("INSERT INTO fault_event (k) SELECT 'lw' || i FROM generate_series(1, 50) i")
        invalidate_slot(self.pg)
        self.assert_gap_exit(w, "slot lost while running")
        summary("gap-lost-while-running-fail", 1, 0, 0, exit_code=3)

    def test_other_database_system_is_refused(self):
        w = self.start_walbust()
        w.sync(timeout=30 * SLOW)
        self.assertEqual(w.stop(timeout=15 * SLOW), 0)
        other = fixtures.PostgresServer()
        self.addCleanup(other.close)
        faultlib.event_schema(other)
        w.config["postgres"]["dsn"] = other.dsn
        w.write_config()
        before = read_state(w)
        codes = []
        # A service manager restarts a failed service: every start must refuse.
        for attempt in range(2):
            w.start()
            codes.append(w.wait(timeout=60 * SLOW))
            text = w.log()
            with self.subTest(start=attempt):
                self.assertEqual(codes[-1], 1, w.log_tail())
                self.assertIn(self.system_identifier(), text)
                self.assertIn(self.system_identifier(other), text)
                self.assertIsNone(other.slot_info("walbust"),
                                  "a slot was created on the other system")
                self.assertEqual(read_state(w), before,
                                 "the refused start rewrote the state file")
        summary("gap-other-system", 2, 0, 0, exit_codes="/".join(map(str, codes)))


class GapRecoveryTest(GapCase):
    def gap_loop(self, on_gap, make_gap, scenario, seed):
        """REPEAT times: changes while walbust is stopped, a gap, a start in `on_gap`
        mode; then the missed changes' keys must be gone and streaming must go on."""
        pool = KeyPool(self.r, f"{on_gap[:5]}-")
        work = EventWorkload(self.pg, pool, seed=seed)
        self.addCleanup(work.close)
        w = self.start_walbust({"on_gap": on_gap})
        w.sync(timeout=30 * SLOW)
        keys = 0
        for rep in range(REPEAT):
            self.assertEqual(w.stop(timeout=15 * SLOW), 0)
            mark = faultlib.audit_mark(self.pg)
            work.run(40)  # missed: the gap swallows them
            work._drop_connection()
            make_gap()
            self.r.mset({k: "x" for k in UNRELATED})
            generated = pool.all_keys()
            w.start()
            w.wait_for_log(r"replication gap", timeout=30 * SLOW)
            # The flush runs between the new slot's creation and the stream's start. The
            # slot shows active while it is being created, so an active slot alone does not
            # prove the flush is done: its log line does.
            w.wait_for_log(r"(FLUSHDB done|deleted \d+ keys matching .*) after the gap",
                           timeout=60 * SLOW)
            w.wait_streaming(timeout=60 * SLOW)
            self.assertEqual(self.pg.slot_info("walbust")["wal_status"] in ("reserved", "extended"),
                             True, "the new slot is not healthy")
            # The missed changes: every key they derive must be gone after the flush.
            missed = faultlib.derived_keys(self.pg, mark)
            left = fixtures.existing_keys(self.r, missed)
            self.lost += len(left)
            self.assertEqual(left, set(), f"{scenario} rep {rep}: keys of missed changes"
                             f" survived the flush\n{w.log_tail()}")
            keys += len(missed)
            if on_gap == "flush_rules":
                # Every key the rules can produce is gone; the others survived.
                self.assertEqual(fixtures.existing_keys(self.r, generated), set())
                self.assertEqual(fixtures.existing_keys(self.r, UNRELATED), set(UNRELATED),
                                 "flush_rules deleted keys no rule can produce")
            else:
                self.assertEqual(self.r.dbsize(), 0, "FLUSHDB was not done")
            # Streaming continues: new changes are invalidated as usual.
            mark = faultlib.audit_mark(self.pg)
            pool2 = KeyPool(self.r, f"{on_gap[:5]}{rep}after-")
            EventWorkload(self.pg, pool2, seed=seed + 1 + rep).run(30)
            w.sync(timeout=30 * SLOW)
            after = faultlib.derived_keys(self.pg, mark)
            left = fixtures.existing_keys(self.r, after)
            self.lost += len(left)
            self.assertEqual(left, set(), f"{scenario} rep {rep}: changes after the gap lost")
            keys += len(after)
            state = read_state(w)
            self.assertEqual(state["system_identifier"], self.system_identifier())
        warns = self.log_records(r" warning replication gap")
        self.assertEqual(len(warns), REPEAT, "\n".join(warns))
        summary(scenario, REPEAT, keys, self.lost)

    def test_lost_slot_flush_rules(self):
        self.gap_loop("flush_rules", lambda: invalidate_slot(self.pg), "gap-lost-flush_rules",
                      seed=7301)

    def test_missing_slot_flushdb(self):
        self.gap_loop("flushdb", lambda: self.pg.drop_slot("walbust"), "gap-missing-flushdb",
                      seed=7401)


if __name__ == "__main__":
    unittest.main()
