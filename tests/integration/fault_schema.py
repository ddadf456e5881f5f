"""Fault injection: schema changes under load (ctest label `fault`).

While seeded transactions commit on fault_event, the rules' tables go through what
migrations do to them: fault_event itself is renamed (a view takes its old name so the
workload keeps writing through it), gains and loses columns the rules do not name, and a
second rule table is renamed, dropped from the publication, dropped and recreated. The
oracle (see faultlib) checks that no key of a rule that stays bound goes stale across all
of it, and that the event rules never report themselves unbound.
"""

import os
import time
import unittest

import faultlib
from faultlib import SLOW, EventWorkload, FaultCase, KeyPool, log, summary

REPEAT = faultlib.repeat(2)

SIDE_RULES = """\
version: 1
rules:
  - name: side-pages
    table: fault_side
    delete: ["side:{id}"]
"""

EVENT_RULE_NAMES = ("event-insert", "event-update", "event-delete")


class SchemaChangesUnderLoadTest(FaultCase):
    def schema(self):
        self.pg.execute("CREATE TABLE fault_side (id int PRIMARY KEY)")
        faultlib.event_schema(self.pg, extra_tables=("fault_side",))

    def unbound(self, rule):
        return faultlib.metric(self.metrics(), "walbust_rule_unbound", rule=rule)

    def ddl_round(self, rep):
        """Every DDL step of one round; fault_event is renamed and back, behind a view."""
        pg = self.pg
        steps = [
            "ALTER TABLE fault_event ADD COLUMN extra text",
            "ALTER TABLE fault_event DROP COLUMN extra",
            # The view's column list is fixed when it is created: the workload's INSERTs
            # name their columns, so they keep working through it.
            "BEGIN; ALTER TABLE fault_event RENAME TO fault_event_moved; "
            "CREATE VIEW fault_event AS SELECT * FROM fault_event_moved; COMMIT",
            "ALTER TABLE fault_side RENAME TO fault_side_moved",
            "ALTER PUBLICATION walbust DROP TABLE fault_side_moved",
            "DROP TABLE fault_side_moved",
            f"CREATE TABLE fault_side (id int PRIMARY KEY); INSERT INTO fault_side VALUES ({rep})",
            "ALTER PUBLICATION walbust ADD TABLE fault_side",
            "BEGIN; DROP VIEW fault_event; ALTER TABLE fault_event_moved RENAME TO fault_event; "
            "COMMIT",
        ]
        for sql in steps:
            pg.execute(sql)
            time.sleep(0.3)

    def test_no_bound_rule_goes_stale_across_schema_changes(self):
        side_rules = os.path.join(self.rules_dir, "side.yaml")
        with open(side_rules, "w") as f:
            f.write(SIDE_RULES)
        pool = KeyPool(self.r, "sc-")
        w = self.make_walbust(rules=[self.rules_path, side_rules])
        w.start()
        w.wait_streaming(timeout=30 * SLOW)
        w.sync(timeout=30 * SLOW)
        mark = faultlib.audit_mark(self.pg)
        work = EventWorkload(self.pg, pool, seed=9101).start()
        self.addCleanup(work.close)
        for rep in range(REPEAT):
            self.ddl_round(rep)
            for rule in EVENT_RULE_NAMES:
                self.assertEqual(self.unbound(rule), 0, f"{rule} unbound\n{w.log_tail()}")
        work.stop()
        w.sync(timeout=60 * SLOW)
        keys = self.check_oracle(pool, mark, "schema-changes")
        samples = self.metrics()
        renames = faultlib.metric(samples, "walbust_schema_changes_total", kind="rename")
        recreates = faultlib.metric(samples, "walbust_schema_changes_total", kind="recreate")
        log(f"schema-changes: {renames:.0f} renames, {recreates:.0f} recreations followed;"
            f" workload {work.stats()}")
        # fault_event's renames show in its next Relation message; the side table's may
        # fall between two catalog checks.
        self.assertGreaterEqual(renames, 1)
        self.assertEqual(self.unbound("side-pages"), 0)
        self.assertTrue(w.running())
        summary("schema-changes-under-load", REPEAT, keys, self.lost)


if __name__ == "__main__":
    unittest.main()
