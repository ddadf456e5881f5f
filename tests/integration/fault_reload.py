"""Fault injection: SIGHUP storms under load (ctest label `fault`).

Rules and config files are rewritten between valid and broken versions while SIGHUPs
arrive in bursts and transactions commit. README "Running as a service": a reload is atomic, and a reload with
any error keeps the old rules running. The broken versions are chosen so that a partial
reload would show as lost invalidations: one of them pairs a broken extra.yaml with an
events.yaml that is valid but derives different keys; applying the valid half alone
would stop the oracle's keys from being deleted.
"""

import os
import random
import signal
import time
import unittest

import faultlib
from faultlib import EVENT_RULES, SLOW, EventWorkload, FaultCase, KeyPool, log, summary

REPEAT = faultlib.repeat(3)

EXTRA_VALID = """\
version: 1
rules:
  - name: extra-insert
    table: fault_event
    on: [insert]
    delete: ["extra:{k}"]
"""

# Valid on its own, but it derives other keys than the oracle expects.
EVENTS_WRONG = EVENT_RULES.replace("ev:ins:", "ev:WRONG:").replace("ev:upd:", "ev:WRONG2:")

# (name, extra.yaml text or None to remove the file, events.yaml text, walbust.yaml broken?)
BROKEN = [
    ("yaml-syntax", "version: 1\nrules: [\n  - name: x\n", EVENT_RULES, False),
    ("unknown-key", EXTRA_VALID.replace("delete:", "dleete:"), EVENT_RULES, False),
    ("duplicate-name", EXTRA_VALID.replace("extra-insert", "event-insert"), EVENT_RULES, False),
    ("unclosed-brace", EXTRA_VALID.replace("{k}", "{k"), EVENT_RULES, False),
    ("unknown-filter", EXTRA_VALID.replace("{k}", "{k|nope}"), EVENT_RULES, False),
    ("empty-file", "", EVENT_RULES, False),
    ("binary", "\x00\xff\xfe garbage \x01", EVENT_RULES, False),
    ("missing-file", None, EVENT_RULES, False),
    ("half-valid", "version: 1\nrules:\n  - table: fault_event\n", EVENTS_WRONG, False),
    ("broken-config", EXTRA_VALID, EVENT_RULES, True),
]


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)
    os.replace(tmp, path)


class ReloadStormTest(FaultCase):
    def setUp(self):
        super().setUp()
        self.extra_path = os.path.join(self.rules_dir, "extra.yaml")
        write_atomically(self.extra_path, EXTRA_VALID)

    def write_valid(self):
        # Order matters while reloads run concurrently: events.yaml is made right before
        # extra.yaml becomes valid, so a valid extra.yaml never meets EVENTS_WRONG.
        write_atomically(self.rules_path, EVENT_RULES)
        write_atomically(self.extra_path, EXTRA_VALID)
        self.walbust.write_config()

    def write_broken(self, variant):
        _, extra, events, config_broken = variant
        # extra.yaml breaks first, so EVENTS_WRONG is only ever seen next to it.
        if extra is None:
            if os.path.exists(self.extra_path):
                os.remove(self.extra_path)
        else:
            write_atomically(self.extra_path, extra)
        write_atomically(self.rules_path, events)
        if config_broken:
            with open(self.walbust.config_path) as f:
                text = f.read()
            write_atomically(self.walbust.config_path, text + "colour: blue\n")

    def reload_results(self):
        samples = self.metrics()
        return (faultlib.metric(samples, "walbust_config_reloads_total", result="ok"),
                faultlib.metric(samples, "walbust_config_reloads_total", result="error"))

    def wait_reload(self, before, result):
        """Waits until one more reload with `result` was counted."""
        index = 0 if result == "ok" else 1
        self.walbust.wait_for(lambda: self.reload_results()[index] > before[index],
                              timeout=30 * SLOW, message=f"a reload with result {result}")

    def test_failed_reload_keeps_old_rules(self):
        """Each broken version: the reload fails, the old rules keep deleting."""
        pool = KeyPool(self.r, "rl-")
        w = self.make_walbust(rules=[self.rules_path, self.extra_path])
        w.start()
        w.wait_streaming(timeout=30 * SLOW)
        w.sync(timeout=30 * SLOW)
        work = EventWorkload(self.pg, pool, seed=8001)
        self.addCleanup(work.close)
        keys = 0
        for rep in range(REPEAT):
            for variant in BROKEN:
                before = self.reload_results()
                self.write_broken(variant)
                w.signal(signal.SIGHUP)
                self.wait_reload(before, "error")
                mark = faultlib.audit_mark(self.pg)
                work.run(15)
                w.sync(timeout=30 * SLOW)
                keys += self.check_oracle(pool, mark, f"rules {variant[0]} rep {rep}")
                self.write_valid()
                before = self.reload_results()
                w.signal(signal.SIGHUP)
                self.wait_reload(before, "ok")
        errors = self.log_records(r" error reload failed")
        log(f"reload: {len(errors)} failed reloads logged")
        self.assertEqual(len(errors), REPEAT * len(BROKEN))
        self.assertTrue(w.running())
        summary("reload-broken-keeps-old-rules", REPEAT * len(BROKEN), keys, self.lost)

    def test_sighup_storm_under_load(self):
        rng = random.Random(8101)
        pool = KeyPool(self.r, "rs-")
        w = self.make_walbust(rules=[self.rules_path, self.extra_path])
        w.start()
        w.wait_streaming(timeout=30 * SLOW)
        w.sync(timeout=30 * SLOW)
        mark = faultlib.audit_mark(self.pg)
        work = EventWorkload(self.pg, pool, seed=8102).start()
        self.addCleanup(work.close)
        signals = 0
        for rep in range(REPEAT):
            for _ in range(40):
                if rng.random() < 0.5:
                    self.write_valid()
                else:
                    self.write_broken(rng.choice(BROKEN))
                for _ in range(rng.randint(1, 4)):  # bursts: several signals at once
                    w.signal(signal.SIGHUP)
                    signals += 1
                time.sleep(rng.uniform(0.0, 0.05))
            # End each storm on the valid files and let the last reload land.
            self.write_valid()
            before = self.reload_results()
            w.signal(signal.SIGHUP)
            signals += 1
            self.wait_reload(before, "ok")
            self.assertTrue(w.running(), w.log_tail())
        work.stop()
        w.sync(timeout=60 * SLOW)
        keys = self.check_oracle(pool, mark, "sighup-storm")
        ok, failed = self.reload_results()
        log(f"sighup-storm: {signals} signals, {ok:.0f} reloads ok, {failed:.0f} failed;"
            f" workload {work.stats()}")
        self.assertGreater(failed, 0)
        self.assertLessEqual(ok + failed, signals)
        # The valid rules of the end are in effect: extra.yaml's rule deletes too.
        self.r.set("extra:after-storm", "c")
        self.pg.execute("INSERT INTO fault_event (k) VALUES ('after-storm')")
        w.sync(timeout=30 * SLOW)
        self.assertFalse(self.r.exists("extra:after-storm"))
        summary("sighup-storm", REPEAT, keys, self.lost, signals=signals,
                reloads_ok=int(ok), reloads_failed=int(failed))


if __name__ == "__main__":
    unittest.main()
