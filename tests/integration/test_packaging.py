"""Packaging checks: the systemd unit, alerting rules, dashboard, sample config and the .deb.

Run from tests/integration with WALBUST_BIN (the built binary) and WALBUST_SOURCE_DIR (the
repository root), as ctest does. Needs systemd-analyze, promtool (Debian's prometheus),
python3-yaml, dpkg-deb, and root (or passwordless sudo) for the install round trip.
"""

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import yaml

SOURCE_DIR = os.environ.get("WALBUST_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
WALBUST_BIN = os.environ.get("WALBUST_BIN", "")
PACKAGING = os.path.join(SOURCE_DIR, "packaging")
UNIT = os.path.join(PACKAGING, "walbust.service")

# README "Running as a service": every metric the dashboard must show.
SPEC_METRICS = [
    "walbust_build_info",
    "walbust_changes_total",
    "walbust_transactions_total",
    "walbust_keys_deleted_total",
    "walbust_keys_existed_total",
    "walbust_redis_commands_total",
    "walbust_redis_errors_total",
    "walbust_batch_keys",
    "walbust_commit_to_delete_seconds",
    "walbust_replication_lag_bytes",
    "walbust_confirmed_flush_lsn",
    "walbust_render_failures_total",
    "walbust_reconnects_total",
    "walbust_config_reloads_total",
]


def run(cmd, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 120)
    return subprocess.run(cmd, **kwargs)


def parse_unit(path):
    """Unit file as {section: [(key, value), ...]}, keeping repeated keys in order."""
    sections, current = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], [])
                continue
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def values(section, key):
    return [v for k, v in section if k == key]


def unit_for(binary, tmp):
    """A copy of the unit whose commands run `binary`, so verify finds an executable."""
    with open(UNIT) as f:
        text = f.read().replace("/usr/bin/walbust", binary)
    path = os.path.join(tmp, "walbust.service")
    with open(path, "w") as f:
        f.write(text)
    return path


class UnitFile(unittest.TestCase):
    def setUp(self):
        self.assertTrue(WALBUST_BIN and os.access(WALBUST_BIN, os.X_OK), "WALBUST_BIN must be the built binary")
        self.tmp = tempfile.mkdtemp(prefix="walbust-unit-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_directives(self):
        unit = parse_unit(UNIT)
        service = unit["Service"]
        single = {k: v for k, v in service}
        self.assertEqual(single["Type"], "notify")
        self.assertEqual(values(service, "ExecStartPre"), ["/usr/bin/walbust check -c /etc/walbust/walbust.yaml"])
        self.assertEqual(values(service, "ExecStart"), ["/usr/bin/walbust run -c /etc/walbust/walbust.yaml"])
        self.assertEqual(values(service, "ExecReload"),
                         ["/usr/bin/walbust check -c /etc/walbust/walbust.yaml", "/bin/sh -c 'kill -HUP ${MAINPID}'"])
        expected = {
            "Restart": "on-failure", "RestartSec": "2s", "RestartPreventExitStatus": "2 3",
            "WatchdogSec": "30s", "DynamicUser": "yes", "StateDirectory": "walbust",
            "ConfigurationDirectory": "walbust", "ProtectSystem": "strict", "ProtectHome": "yes",
            "PrivateTmp": "yes", "PrivateDevices": "yes", "NoNewPrivileges": "yes",
            "CapabilityBoundingSet": "", "AmbientCapabilities": "", "SystemCallArchitectures": "native",
            "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "RestrictNamespaces": "yes",
            "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
            "MemoryDenyWriteExecute": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
            "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "ProtectClock": "yes",
            "ProtectHostname": "yes", "ProtectProc": "invisible", "ProcSubset": "pid", "UMask": "0077",
        }
        for key, value in expected.items():
            self.assertEqual(single.get(key), value, key)
        self.assertEqual(values(service, "SystemCallFilter"), ["@system-service", "~@privileged @resources"])
        self.assertEqual(sorted(values(service, "LoadCredential")), ["pg-password", "redis-password"])
        after = " ".join(values(unit["Unit"], "After")).split()
        for dep in ("network-online.target", "postgresql.service", "redis-server.service"):
            self.assertIn(dep, after)
        self.assertIn("network-online.target", " ".join(values(unit["Unit"], "Wants")))

    def test_systemd_analyze_verify_is_clean(self):
        path = unit_for(WALBUST_BIN, self.tmp)
        res = run(["systemd-analyze", "verify", path])
        output = res.stdout + res.stderr
        self.assertEqual(res.returncode, 0, output)
        self.assertNotIn("walbust", output, output)

    def test_security_exposure_at_most_2(self):
        path = unit_for(WALBUST_BIN, self.tmp)
        res = run(["systemd-analyze", "security", "--offline=true", "--no-pager", path])
        output = res.stdout + res.stderr
        match = re.search(r"Overall exposure level for walbust\.service: (\d+(?:\.\d+)?)", output)
        self.assertIsNotNone(match, output)
        self.assertLessEqual(float(match.group(1)), 2.0, output)


class Alerts(unittest.TestCase):
    ALERTS = os.path.join(PACKAGING, "alerts.yml")

    def test_promtool_accepts_rules(self):
        res = run(["promtool", "check", "rules", self.ALERTS])
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)

    def test_covers_the_operational_signals(self):
        with open(self.ALERTS) as f:
            rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
        exprs = " ".join(r["expr"] for r in rules)
        for needle in ("walbust_replication_lag_bytes", "walbust_redis_errors_total", "walbust_reconnects_total",
                       "walbust_commit_to_delete_seconds_bucket", "up{", "walbust_config_reloads_total",
                       "walbust_rule_unbound"):
            self.assertIn(needle, exprs)
        for r in rules:
            self.assertIn("severity", r["labels"], r["alert"])
            self.assertIn("summary", r["annotations"], r["alert"])

    def test_alerts_fire_on_sample_series(self):
        """promtool unit tests: the down, reload and slot alerts fire when they should."""
        tmp = tempfile.mkdtemp(prefix="walbust-alerts-")
        try:
            shutil.copy(self.ALERTS, os.path.join(tmp, "alerts.yml"))
            tests = {
                "rule_files": ["alerts.yml"],
                "evaluation_interval": "1m",
                "tests": [{
                    "interval": "1m",
                    "input_series": [
                        {"series": 'up{job="walbust",instance="a:9650"}', "values": "1 0x10"},
                        {"series": 'walbust_config_reloads_total{job="walbust",instance="a:9650",result="error"}',
                         "values": "0 0 1 1 1 1"},
                        {"series": 'walbust_config_reloads_total{job="walbust",instance="a:9650",result="ok"}',
                         "values": "0 1 2 3 4 5"},
                        {"series": 'walbust_replication_lag_bytes{job="walbust",instance="a:9650"}',
                         "values": "9000000000x10"},
                        {"series": 'walbust_rule_unbound{job="walbust",instance="a:9650",rule="post-pages"}',
                         "values": "0 0 1x10"},
                    ],
                    "alert_rule_test": [
                        {"eval_time": "5m", "alertname": "WalbustDown", "exp_alerts": [
                            {"exp_labels": {"severity": "critical", "job": "walbust", "instance": "a:9650"},
                             "exp_annotations": {
                                 "summary": "walbust on a:9650 is down",
                                 "description": "Prometheus cannot scrape walbust. While it is down no cache key "
                                                "is invalidated and the slot retains WAL."}}]},
                        {"eval_time": "1m", "alertname": "WalbustDown", "exp_alerts": []},
                        {"eval_time": "4m", "alertname": "WalbustConfigReloadFailed", "exp_alerts": [
                            {"exp_labels": {"severity": "warning", "job": "walbust", "instance": "a:9650"},
                             "exp_annotations": {
                                 "summary": "walbust rejected a configuration reload on a:9650",
                                 "description": "A reload failed and the previous rules are still running. "
                                                "See journalctl -u walbust and run walbust check."}}]},
                        {"eval_time": "1m", "alertname": "WalbustConfigReloadFailed", "exp_alerts": []},
                        {"eval_time": "1m", "alertname": "WalbustRuleUnbound", "exp_alerts": []},
                        {"eval_time": "4m", "alertname": "WalbustRuleUnbound", "exp_alerts": [
                            {"exp_labels": {"severity": "critical", "job": "walbust", "instance": "a:9650",
                                            "rule": "post-pages"},
                             "exp_annotations": {
                                 "summary": "walbust rule post-pages cannot match on a:9650",
                                 "description": "Its table is missing, not in the publication, or lacks a column "
                                                "the rule names (a migration renamed or dropped it): its keys go "
                                                "stale. curl /healthz names the reason; fix the rule's table: or "
                                                "the publication (walbust check --db)."}}]},
                        {"eval_time": "8m", "alertname": "WalbustSlotNearWalKeepLimit", "exp_alerts": [
                            {"exp_labels": {"severity": "critical", "job": "walbust", "instance": "a:9650"},
                             "exp_annotations": {
                                 "summary": "walbust slot close to max_slot_wal_keep_size on a:9650",
                                 "description": "The slot retains 8.382GiB of WAL. If it reaches "
                                                "max_slot_wal_keep_size the slot is lost and caches must be flushed."}}]},
                    ],
                }],
            }
            path = os.path.join(tmp, "tests.yml")
            with open(path, "w") as f:
                yaml.safe_dump(tests, f)
            res = run(["promtool", "test", "rules", path], cwd=tmp)
            self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class Dashboard(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(PACKAGING, "grafana-dashboard.json")) as f:
            self.dashboard = json.load(f)
        self.exprs = [t["expr"] for p in self.dashboard["panels"] for t in p.get("targets", [])]

    def test_has_a_panel_for_every_spec_metric(self):
        for metric in SPEC_METRICS:
            self.assertTrue(any(re.search(r"\b%s(_bucket|_sum|_count)?\b" % metric, e) for e in self.exprs), metric)

    def test_panels_are_well_formed(self):
        ids = [p["id"] for p in self.dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for p in self.dashboard["panels"]:
            self.assertTrue(p.get("title"))
            self.assertEqual(set(p["gridPos"]), {"x", "y", "w", "h"})
            self.assertLessEqual(p["gridPos"]["x"] + p["gridPos"]["w"], 24)

    def test_queries_are_valid_promql(self):
        # promtool has no expression checker; recording rules make it parse each query.
        rules = [{"record": "dashboard:query%d" % i,
                  "expr": e.replace("$__rate_interval", "5m").replace("$instance", ".*")}
                 for i, e in enumerate(self.exprs)]
        tmp = tempfile.mkdtemp(prefix="walbust-dash-")
        try:
            path = os.path.join(tmp, "queries.yml")
            with open(path, "w") as f:
                yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            res = run(["promtool", "check", "rules", path])
            self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class SampleFiles(unittest.TestCase):
    def test_sample_config_uses_spec_keys(self):
        with open(os.path.join(PACKAGING, "walbust.yaml")) as f:
            config = yaml.safe_load(f)
        allowed = {
            "postgres": {"dsn", "password_file", "slot", "publication", "create_slot", "status_interval"},
            "redis": {"url", "password_file", "delete_command", "timeout"},
            "batch": {"max_keys", "max_delay"},
            "metrics": {"listen"},
            "log": {"level", "format"},
        }
        self.assertLessEqual(set(config), set(allowed) | {"rules", "targets", "state_dir", "on_gap"})
        for section, keys in allowed.items():
            self.assertLessEqual(set(config[section]), keys, section)
        self.assertEqual(config["rules"], ["/etc/walbust/rules.d/*.yaml"])
        self.assertNotIn("state_dir", config, "unset so $STATE_DIRECTORY applies")
        self.assertNotIn("password", config["postgres"]["dsn"])

    def test_example_rules_file(self):
        with open(os.path.join(PACKAGING, "rules.d", "example.yaml")) as f:
            rules = yaml.safe_load(f)
        self.assertEqual(rules["version"], 1)
        self.assertIsInstance(rules["rules"], list)


def build_dir_of(binary):
    """The CMake build tree that produced `binary` (the nearest parent with CMakeCache.txt)."""
    d = os.path.dirname(os.path.abspath(binary))
    while d != os.path.dirname(d):
        if os.path.exists(os.path.join(d, "CMakeCache.txt")):
            return d
        d = os.path.dirname(d)
    return None


class DebianPackage(unittest.TestCase):
    """Builds the .deb, inspects it, installs, runs and removes it.

    Packages the already built tree with cpack (seconds) when it has a CPackConfig.cmake;
    otherwise configures and builds a separate tree with -DCMAKE_INSTALL_PREFIX=/usr.
    """

    EXPECTED_FILES = [
        "./usr/bin/walbust",
        "./lib/systemd/system/walbust.service",
        "./etc/walbust/walbust.yaml",
        "./etc/walbust/rules.d/example.yaml",
        "./usr/share/walbust/alerts.yml",
        "./usr/share/walbust/grafana-dashboard.json",
        "./usr/share/doc/walbust/README.Debian",
    ]

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="walbust-deb-")
        self.sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        # Other worktrees may run this test at the same time: one dpkg round trip at a time.
        self.lock = open(os.path.join(tempfile.gettempdir(), "walbust-deb-test.lock"), "w")
        fcntl.flock(self.lock, fcntl.LOCK_EX)

    def tearDown(self):
        run(self.sudo + ["dpkg", "--purge", "walbust"])
        fcntl.flock(self.lock, fcntl.LOCK_UN)
        self.lock.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def build_deb(self):
        out = os.path.join(self.tmp, "out")
        build = build_dir_of(WALBUST_BIN) if WALBUST_BIN else None
        if build and os.path.exists(os.path.join(build, "CPackConfig.cmake")):
            res = run(["cpack", "--config", os.path.join(build, "CPackConfig.cmake"), "-B", out], timeout=150)
        else:
            tree = os.path.join(self.tmp, "build")
            res = run(["cmake", "-S", SOURCE_DIR, "-B", tree, "-DCMAKE_INSTALL_PREFIX=/usr",
                       "-DWALBUST_BUILD_TESTS=OFF"], timeout=150)
            self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
            res = run(["cmake", "--build", tree, "-j2", "--target", "package"], timeout=170)
            out = tree
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        debs = [f for f in os.listdir(out) if f.endswith(".deb")]
        self.assertEqual(len(debs), 1, debs)
        return os.path.join(out, debs[0])

    def dpkg(self, *args):
        # dpkg refuses to run while another dpkg/apt holds its lock: wait for it.
        deadline = time.monotonic() + 60
        while True:
            res = run(self.sudo + ["dpkg", *args])
            if res.returncode == 0 or "lock" not in res.stderr or time.monotonic() > deadline:
                return res
            time.sleep(1)

    def test_build_inspect_install_remove(self):
        before = run(["dpkg-query", "-W", "-f=${Status}", "walbust"])
        self.assertNotIn("install ok installed", before.stdout,
                         "a walbust package is already installed; this test would replace it")
        deb = self.build_deb()

        info = run(["dpkg-deb", "-I", deb])
        self.assertEqual(info.returncode, 0, info.stderr)
        fields = {f: run(["dpkg-deb", "-f", deb, f]).stdout.strip()
                  for f in ("Package", "Section", "Maintainer", "Depends", "Architecture")}
        self.assertEqual(fields["Package"], "walbust")
        self.assertEqual(fields["Section"], "net")
        self.assertEqual(fields["Maintainer"], "walbust maintainers <walbust@localhost>")
        self.assertIn("libc6", fields["Depends"], "dpkg-shlibdeps computed the dependencies")
        control = os.path.join(self.tmp, "control")
        self.assertEqual(run(["dpkg-deb", "-e", deb, control]).returncode, 0)
        with open(os.path.join(control, "conffiles")) as f:
            self.assertEqual(sorted(f.read().split()),
                             ["/etc/walbust/rules.d/example.yaml", "/etc/walbust/walbust.yaml"])

        listing = run(["dpkg-deb", "-c", deb]).stdout
        names = [line.split()[-1] for line in listing.splitlines()]
        for path in self.EXPECTED_FILES:
            self.assertIn(path, names, listing)

        res = self.dpkg("-i", deb)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        res = run(["/usr/bin/walbust", "version"])
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn("walbust", res.stdout + res.stderr)
        # The installed unit, now with its real binary in place.
        res = run(["systemd-analyze", "verify", "/lib/systemd/system/walbust.service"])
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertNotIn("walbust", res.stdout + res.stderr)
        # The shipped configuration passes the daemon's own validation.
        res = run(["/usr/bin/walbust", "check", "-c", "/etc/walbust/walbust.yaml"])
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)

        res = self.dpkg("-r", "walbust")
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertFalse(os.path.exists("/usr/bin/walbust"))
        self.assertTrue(os.path.exists("/etc/walbust/walbust.yaml"), "conffiles stay until purge")
        res = self.dpkg("--purge", "walbust")
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertFalse(os.path.exists("/etc/walbust/walbust.yaml"))


if __name__ == "__main__":
    unittest.main()
