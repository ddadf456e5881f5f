"""The shipped .deb and its hardened unit, run by a real systemd (PID 1 of a test machine).

One machine for the class: the package is installed with apt-get, walbust streams from the
host's PostgreSQL (SCRAM role, password from /etc/credstore) into the host's Redis
(requirepass, password from /etc/credstore). Each test leaves the service running, and
every test fails if the journal shows a sandbox or seccomp denial while it ran.
"""

import json
import os
import re
import shutil
import tempfile
import time
import unittest

import psycopg2
import redis

from machine import DENIALS, Deployment, Machine, build_deb, deb_depends, fixtures


class ServiceUnderSystemd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="walbust-systemd-")
        cls.deb = build_deb(cls.tmp)
        cls.env = Deployment()
        try:
            cls.machine = Machine(packages=deb_depends(cls.deb))
        except BaseException:
            cls.env.close()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise
        res = cls.machine.install(cls.deb)
        if res.returncode != 0:
            cls.tearDownClass()
            raise AssertionError(f"apt-get install failed:\n{res.stdout}\n{res.stderr}")
        cls.env.configure(cls.machine)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.machine.close()
        finally:
            cls.env.close()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.m = self.machine
        self.cursor = self.journal_cursor()
        self.ensure_running()

    def tearDown(self):
        lines = [line for line in self.journal_since(self.cursor).splitlines() if DENIALS.search(line)]
        self.assertEqual(lines, [], "sandbox or seccomp denials in the journal")

    # -- helpers --------------------------------------------------------------------------

    def journal_cursor(self):
        out = self.m.exec(["journalctl", "-n", "0", "--show-cursor", "--no-pager"]).stdout
        match = re.search(r"-- cursor: (\S+)", out)
        return match.group(1) if match else None

    def journal_since(self, cursor, *args):
        extra = [f"--after-cursor={cursor}"] if cursor else []
        return self.m.journal(*extra, *args)

    def unit_log(self):
        return self.m.journal("-u", "walbust", "-n", "80")

    def state(self, *props):
        return self.m.show("walbust", *props)

    def ensure_running(self):
        if self.state("ActiveState")["ActiveState"] != "active":
            self.m.systemctl("reset-failed", "walbust")
            res = self.m.systemctl("start", "walbust")
            self.assertEqual(res.returncode, 0, res.stderr + self.unit_log())

    def wait_state(self, want, timeout=30):
        """Polls the unit's state until want(props) holds; returns those props."""
        names = ("ActiveState", "SubState", "Result", "NRestarts", "ExecMainStatus", "MainPID")

        def check():
            props = self.state(*names)
            return props if want(props) else None

        return fixtures.wait_for(check, timeout=timeout, interval=0.2, on_timeout=self.unit_log)

    def assert_deletes(self, grp=1, extra_templates=()):
        return self.env.check_deletes(grp, extra_templates, on_timeout=self.unit_log)

    # -- tests ----------------------------------------------------------------------------

    def test_start_returns_only_once_ready_and_streaming(self):
        self.m.systemctl("stop", "walbust")
        res = self.m.systemctl("start", "walbust")
        self.assertEqual(res.returncode, 0, res.stderr + self.unit_log())
        # Type=notify: `systemctl start` returned after READY=1, so the stream is up already.
        slot = self.env.pg.slot_info("walbust")
        self.assertIsNotNone(slot)
        self.assertTrue(slot["active"], slot)
        props = self.state("ActiveState", "SubState", "StatusText", "Type")
        self.assertEqual((props["ActiveState"], props["SubState"]), ("active", "running"), props)
        self.assertIn("streaming", props["StatusText"])
        status = self.m.systemctl("status", "walbust").stdout
        self.assertIn("active (running)", status)
        self.assertIn("Status: \"streaming", status)
        self.assert_deletes()

    def test_it_is_not_active_while_postgresql_is_down(self):
        self.m.systemctl("stop", "walbust")
        port = self.env.pg.port
        self.env.pg.stop()
        try:
            self.m.systemctl("start", "--no-block", "walbust")
            seen = set()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                props = self.state("ActiveState", "SubState")
                seen.add((props["ActiveState"], props["SubState"]))
                time.sleep(0.2)
            self.assertNotIn("active", {a for a, _ in seen}, seen)
        finally:
            self.env.pg.start()
        self.assertEqual(self.env.pg.port, port, "PostgreSQL came back on another port; walbust cannot follow")
        # Once the server is back, READY=1 follows with the stream up.
        self.wait_state(lambda s: s["ActiveState"] == "active", timeout=60)
        self.assertTrue(self.env.pg.slot_info("walbust")["active"])
        self.assert_deletes(grp=8)

    def test_passwords_come_from_the_credstore_only(self):
        config = self.m.read("/etc/walbust/walbust.yaml")
        self.assertNotIn(self.env.pg_password, config)
        self.assertNotIn(self.env.redis_password, config)
        # The role really needs its password (SCRAM), and Redis really requires one.
        with self.assertRaisesRegex(psycopg2.OperationalError, "password"):
            psycopg2.connect(f"host=127.0.0.1 port={self.env.pg.port} dbname=walbust user=walbust_svc",
                             connect_timeout=5)
        with self.assertRaises(redis.exceptions.RedisError):
            self.env.redis.client().ping()
        # ... and walbust streams as that role.
        fixtures.wait_for(lambda: self.env.pg.query(
            "SELECT count(*) FROM pg_stat_replication WHERE usename = 'walbust_svc'")[0][0] == 1, timeout=10)
        self.assert_deletes(grp=2)
        journal = self.m.journal()
        self.assertNotIn(self.env.pg_password, journal)
        self.assertNotIn(self.env.redis_password, journal)
        cmdline = self.m.show("walbust", "ExecStart")["ExecStart"]
        self.assertNotIn("password", cmdline)

    def test_a_broken_reload_fails_visibly_and_the_old_rules_keep_deleting(self):
        pid = self.state("MainPID")["MainPID"]
        good = self.m.read("/etc/walbust/rules.d/items.yaml")
        self.m.write("/etc/walbust/rules.d/items.yaml", good.replace("delete:", "delete_keys_typo:", 1))
        try:
            res = self.m.systemctl("reload", "walbust")
            self.assertNotEqual(res.returncode, 0, "a reload with a broken rules file must fail")
            self.assertIn("items.yaml", self.unit_log())
        finally:
            self.m.write("/etc/walbust/rules.d/items.yaml", good)
        props = self.state("ActiveState", "MainPID")
        self.assertEqual(props, {"ActiveState": "active", "MainPID": pid})
        self.assert_deletes(grp=3)

    def test_a_valid_reload_applies_the_new_rules(self):
        # The machine is a minimal Debian: no procps, so no /bin/kill for ExecReload to use.
        self.assertFalse(os.path.exists(self.m.path("/usr/bin/kill")) or os.path.exists(self.m.path("/bin/kill")))
        pid = self.state("MainPID")["MainPID"]
        good = self.m.read("/etc/walbust/rules.d/items.yaml")
        self.m.write("/etc/walbust/rules.d/items.yaml",
                     good.replace('"group_{grp}"]', '"group_{grp}", "reloaded_{id}"]'))
        try:
            res = self.m.systemctl("reload", "walbust")
            self.assertEqual(res.returncode, 0, res.stderr + self.unit_log())
            fixtures.wait_for(lambda: "reload" in self.unit_log() and "rules" in self.unit_log(), timeout=10)
            self.assert_deletes(4, ["reloaded_{id}"])
        finally:
            self.m.write("/etc/walbust/rules.d/items.yaml", good)
            self.m.systemctl("reload", "walbust")
        self.assertEqual(self.state("MainPID")["MainPID"], pid, "a reload must not restart the daemon")

    def test_the_watchdog_restarts_a_frozen_daemon_and_loses_nothing(self):
        self.m.write("/etc/systemd/system/walbust.service.d/watchdog.conf", "[Service]\nWatchdogSec=3s\n")
        self.m.systemctl("daemon-reload")
        try:
            self.m.systemctl("restart", "walbust")
            before = self.state("MainPID", "NRestarts")
            self.m.systemctl("kill", "--signal=SIGSTOP", "--kill-whom=main", "walbust")
            ids = self.env.insert_items(5, count=20)  # committed while walbust is frozen
            keys = [f"item_{i}" for i in ids]
            self.env.cache(keys)
            after = self.wait_state(lambda s: s["ActiveState"] == "active" and int(s["NRestarts"]) > int(
                before["NRestarts"]) and s["MainPID"] not in ("0", before["MainPID"]), timeout=60)
            self.assertIn("Watchdog timeout", self.journal_since(self.cursor))
            self.env.wait_gone(keys, on_timeout=self.unit_log)
            self.assertEqual(after["ActiveState"], "active")
        finally:
            self.m.sh("rm -f /etc/systemd/system/walbust.service.d/watchdog.conf")
            self.m.systemctl("daemon-reload")
            self.m.systemctl("restart", "walbust")

    def test_stop_exits_0_with_the_slot_acknowledged(self):
        self.env.insert_items(6, count=5)
        end = self.env.pg.current_wal_lsn()
        self.env.sync(on_timeout=self.unit_log)
        res = self.m.systemctl("stop", "walbust")
        self.assertEqual(res.returncode, 0, res.stderr)
        props = self.state("ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
        self.assertEqual(props["ActiveState"], "inactive", props)
        self.assertEqual(props["Result"], "success", props)
        self.assertEqual(props["ExecMainStatus"], "0", props)
        self.assertGreaterEqual(self.env.pg.confirmed_flush_lsn("walbust"), end)
        logged = re.findall(r"stopped; acknowledged up to (\S+)", self.journal_since(self.cursor, "-u", "walbust"))
        self.assertTrue(logged, self.unit_log())
        self.assertGreaterEqual(fixtures.Lsn.parse(logged[-1]), end)

    def test_a_lost_slot_exits_3_without_a_restart_loop(self):
        self.env.sync(on_timeout=self.unit_log)
        self.m.systemctl("stop", "walbust")
        self.env.pg.drop_slot("walbust")
        res = self.m.systemctl("start", "walbust")
        self.assertNotEqual(res.returncode, 0)
        props = self.wait_state(lambda s: s["ActiveState"] == "failed")
        self.assertEqual(props["ExecMainStatus"], "3", props)
        restarts = props["NRestarts"]
        time.sleep(6)  # three times RestartSec
        props = self.state("ActiveState", "NRestarts")
        self.assertEqual(props, {"ActiveState": "failed", "NRestarts": restarts})
        # Recovery as documented: (flush), remove the state file, start again.
        self.m.sh("rm -f /var/lib/private/walbust/walbust-walbust.state")
        self.m.systemctl("reset-failed", "walbust")
        res = self.m.systemctl("start", "walbust")
        self.assertEqual(res.returncode, 0, res.stderr + self.unit_log())
        self.assert_deletes(grp=7)

    def test_dynamic_user_state_survives_restarts(self):
        self.env.sync(on_timeout=self.unit_log)
        state = "/var/lib/private/walbust/walbust-walbust.state"
        fixtures.wait_for(lambda: os.path.exists(self.m.path(state)), timeout=10)
        self.assertEqual(self.m.sh("readlink /var/lib/walbust").stdout.strip(), "private/walbust")
        first = json.loads(self.m.read(state))
        for _ in range(2):
            res = self.m.systemctl("restart", "walbust")
            self.assertEqual(res.returncode, 0, res.stderr + self.unit_log())
        self.env.sync(on_timeout=self.unit_log)
        fixtures.wait_for(lambda: json.loads(self.m.read(state))["acknowledged_lsn"] != first["acknowledged_lsn"],
                          timeout=15, on_timeout=self.unit_log)
        last = json.loads(self.m.read(state))
        # The same server and slot, further along: each start read the file the previous run
        # wrote (a lost file would be a gap check without history).
        self.assertEqual((last["system_identifier"], last["slot"]), (first["system_identifier"], first["slot"]))
        self.assertGreater(fixtures.Lsn.parse(last["acknowledged_lsn"]), fixtures.Lsn.parse(first["acknowledged_lsn"]))
        starts = re.findall(r"streaming from slot walbust at (\S+)", self.journal_since(self.cursor, "-u", "walbust"))
        self.assertEqual(len(starts), 2, self.unit_log())
        self.assertNotIn("creat", self.journal_since(self.cursor, "-u", "walbust").lower())

    def test_journal_shows_warnings_with_their_priorities(self):
        self.m.write("/etc/walbust/walbust.yaml",
                     self.env.config(batch="{max_keys: 5000, max_delay: 0ms}"))
        try:
            res = self.m.systemctl("reload", "walbust")
            self.assertEqual(res.returncode, 0, res.stderr)
            fixtures.wait_for(lambda: "only after a restart" in self.m.journal("-u", "walbust", "-p", "warning"),
                              timeout=10, on_timeout=self.unit_log)
            out = self.m.journal("-u", "walbust", "-p", "warning", "-o", "json")
            entries = [json.loads(line) for line in out.splitlines() if line.strip()]
            priorities = {e["PRIORITY"] for e in entries if "only after a restart" in e.get("MESSAGE", "")}
            self.assertEqual(priorities, {"4"})
            # Info lines are not warnings: the priority prefix is parsed, not printed.
            self.assertNotIn("streaming from slot", self.m.journal("-u", "walbust", "-p", "warning"))
            self.assertNotIn("<4>", self.m.journal("-u", "walbust"))
        finally:
            self.env.configure(self.m)
            self.m.systemctl("restart", "walbust")

    def test_systemd_analyze_security_inside_is_at_most_2(self):
        out = self.m.exec(["systemd-analyze", "security", "--no-pager", "walbust"]).stdout
        match = re.search(r"Overall exposure level for walbust\.service: (\d+(?:\.\d+)?)", out)
        self.assertIsNotNone(match, out)
        self.assertLessEqual(float(match.group(1)), 2.0, out)


if __name__ == "__main__":
    unittest.main()
