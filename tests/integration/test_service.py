"""walbust as a systemd service, against real servers (README "Running as a service").

The test plays systemd's part: it listens on its own NOTIFY_SOCKET and checks the
notifications walbust sends (READY, STATUS, WATCHDOG, RELOADING, STOPPING) and their
order; it reloads with SIGHUP (a valid rules file is applied, a broken one keeps the old
rules deleting), scrapes /metrics and /healthz, and parses JSON log lines.
"""

import json
import os
import re
import signal
import tempfile
import unittest

import fixtures
from fixtures import NotifySocket, PostgresServer, RedisServer, Walbust, http_get

TIMEOUT = 30

SPEC_METRICS = [
    "walbust_build_info", "walbust_changes_total", "walbust_transactions_total",
    "walbust_keys_deleted_total", "walbust_keys_existed_total", "walbust_redis_commands_total",
    "walbust_redis_errors_total", "walbust_batch_keys", "walbust_commit_to_delete_seconds",
    "walbust_replication_lag_bytes", "walbust_confirmed_flush_lsn", "walbust_render_failures_total",
    "walbust_reconnects_total", "walbust_config_reloads_total",
]

RULES_V1 = """version: 1
rules:
  - name: post-pages
    table: blog_post
    delete: ["post_detail_{id}"]
"""

RULES_V2 = """version: 1
rules:
  - name: post-pages-v2
    table: blog_post
    delete: ["post_v2_{id}"]
"""

RULES_BROKEN = """version: 1
rules:
  - name: post-pages
    tabel: blog_post
    delete: ["post_v3_{id"]
"""


class ServiceTest(unittest.TestCase):
    def setUp(self):
        self.pg = PostgresServer()
        self.redis = RedisServer()
        fixtures.blog_schema(self.pg, marker=True)
        self.pg.execute("INSERT INTO blog_category (name, slug) VALUES ('a', 'a')")
        self.tmp = tempfile.mkdtemp(prefix="walbust-service-test-")
        self.rules = os.path.join(self.tmp, "rules.yaml")
        with open(self.rules, "w") as f:
            f.write(RULES_V1)
        self.port = fixtures.free_port()
        self.notify = NotifySocket(self.tmp)
        self.w = Walbust(self.pg, self.redis, rules=[self.rules],
                         config={"metrics": {"listen": f"127.0.0.1:{self.port}"},
                                 "log": {"format": "json"}})

    def tearDown(self):
        self.w.close()
        self.notify.close()
        self.redis.close()
        self.pg.close()

    def insert_post(self, pid):
        self.pg.execute("INSERT INTO blog_post (id, title, slug, author_id, category_id) "
                        "VALUES (%s, 't', 's', 1, 1)", (pid,))

    def test_notify_reload_metrics_logs(self):
        r = self.redis.client()
        env = {"NOTIFY_SOCKET": self.notify.path, "WATCHDOG_USEC": "1000000"}
        self.w.start(env=env)
        fixtures.wait_for(lambda: "READY" in self.notify.kinds(), TIMEOUT, message="READY=1")
        # READY only once the stream and Redis are up.
        self.assertTrue(self.pg.slot_info("walbust")["active"])
        status, body = http_get(self.port, "/healthz")
        # First line: the verdict; then one line per Redis target (docs/scale-out.md).
        self.assertEqual((status, body.splitlines()[0]), (200, "ok: streaming"))
        self.assertRegex(body, r"\ntarget default \(127\.0\.0\.1:\d+/0\): up, \d+ actions queued")

        # Rules v1 delete post_detail_{id}.
        r.set("post_detail_1", "x")
        self.insert_post(1)
        fixtures.wait_for(lambda: not r.exists("post_detail_1"), TIMEOUT, message="v1 delete")

        # A broken rules file: the reload fails, the old rules keep deleting.
        with open(self.rules, "w") as f:
            f.write(RULES_BROKEN)
        self.w.signal(signal.SIGHUP)
        self.w.wait_for_log(r"reload failed", timeout=TIMEOUT)
        self.assertRegex(self.w.log(), re.escape(self.rules) + r":4:5: error")
        r.set("post_detail_2", "x")
        self.insert_post(2)
        fixtures.wait_for(lambda: not r.exists("post_detail_2"), TIMEOUT, message="old rules after failed reload")

        # A valid rules file: applied.
        with open(self.rules, "w") as f:
            f.write(RULES_V2)
        self.w.signal(signal.SIGHUP)
        self.w.wait_for_log(r"reloaded .*: 2 rules", timeout=TIMEOUT)  # with the marker rule
        r.set("post_detail_3", "x")
        r.set("post_v2_3", "x")
        self.insert_post(3)
        fixtures.wait_for(lambda: not r.exists("post_v2_3"), TIMEOUT, message="v2 delete")
        self.w.sync()
        self.assertTrue(r.exists("post_detail_3"), "the v1 rule must be gone after the reload")

        # Metrics: every documented name, the reload outcomes, and sensible values.
        fixtures.wait_for(lambda: len([m for m in self.notify.messages if "WATCHDOG" in m[1]]) >= 3,
                          TIMEOUT, message="three WATCHDOG=1 pings")
        status, text = http_get(self.port, "/metrics")
        self.assertEqual(status, 200)
        families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
        for name in SPEC_METRICS:
            self.assertIn(name, families)
        self.assertRegex(text, r'walbust_config_reloads_total\{result="ok"\} 1\b')
        self.assertRegex(text, r'walbust_config_reloads_total\{result="error"\} 1\b')
        self.assertRegex(text, r'walbust_changes_total\{table="public.blog_post",op="insert"\} 3\b')
        self.assertRegex(text, r'walbust_build_info\{version="[0-9.]+"\} 1\b')
        self.assertRegex(text, r'walbust_commit_to_delete_seconds_count\{target="default"\} [1-9]')
        # PostgreSQL's share of the latency: one observation per transaction read, each no
        # longer than the same transaction's commit→delete.
        def value(pattern):
            m = re.search(r"^" + pattern + r" (\S+)$", text, re.M)
            self.assertIsNotNone(m, pattern)
            return float(m.group(1))
        transactions = value(r"walbust_transactions_total")
        self.assertGreater(transactions, 0)
        self.assertEqual(value(r"walbust_commit_to_receive_seconds_count"), transactions)
        self.assertEqual(value(r'walbust_commit_to_delete_seconds_count\{target="default"\}'), transactions)
        self.assertLessEqual(value(r"walbust_commit_to_receive_seconds_sum"),
                             value(r'walbust_commit_to_delete_seconds_sum\{target="default"\}'))
        self.assertNotIn("post_detail", text)  # keys never appear in labels

        code = self.w.stop()
        self.assertEqual(code, 0)
        kinds = self.notify.kinds()
        # READY first, RELOADING/READY around each reload, STOPPING last. Watchdog pings
        # start before READY on purpose: waiting for PostgreSQL may outlast WatchdogSec.
        self.assertEqual(kinds[-1], "STOPPING", kinds)
        sequence = [k for k in kinds if k in ("READY", "RELOADING", "STOPPING")]
        self.assertEqual(sequence, ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"])
        statuses = [m[1]["STATUS"] for m in self.notify.messages if "STATUS" in m[1]]
        self.assertTrue(any(s.startswith("streaming") for s in statuses), statuses)
        # Watchdog pings arrive at about half of WATCHDOG_USEC.
        pings = [t for t, m in self.notify.messages if "WATCHDOG" in m]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        self.assertTrue(gaps and max(gaps) < 1.5, gaps)

        # JSON logs: every line an object with ts, level and msg.
        lines = [l for l in self.w.log().splitlines() if not l.startswith("=== walbust run")]
        self.assertTrue(lines)
        for line in lines:
            obj = json.loads(line)
            self.assertEqual(set(obj) >= {"ts", "level", "msg"}, True, obj)
        self.assertTrue(any("streaming from slot" in json.loads(l)["msg"] for l in lines))

    def test_a_reload_names_every_redis_setting_it_cannot_apply_and_keeps_deleting(self):
        r = self.redis.client()
        self.w.start()
        self.w.wait_streaming(timeout=TIMEOUT)
        # WAIT and TLS settings are bound to the open Redis connection: a reload must say
        # so rather than keep the old value in silence; the log level applies at once.
        self.w.config["redis"]["wait"] = {"timeout": "250ms"}
        self.w.config["log"]["level"] = "debug"
        self.w.write_config()
        self.w.signal(signal.SIGHUP)
        self.w.wait_for_log(r"reloaded .*: 2 rules", timeout=TIMEOUT)
        log = self.w.log()
        self.assertRegex(log, r"reload: redis\.wait changed; that takes effect only after a restart")
        self.assertEqual(len(re.findall(r"takes effect only after a restart", log)), 1, log)
        r.set("post_detail_1", "x")
        self.insert_post(1)
        fixtures.wait_for(lambda: not r.exists("post_detail_1"), TIMEOUT, message="delete after reload")

    def test_healthz_reports_redis_down(self):
        self.w.start()
        self.w.wait_streaming(timeout=TIMEOUT)
        fixtures.wait_for(lambda: http_get(self.port, "/healthz")[0] == 200, TIMEOUT,
                          message="healthy")
        self.redis.stop()
        # The sink notices on its next batch: give it one.
        self.insert_post(10)
        fixtures.wait_for(lambda: http_get(self.port, "/healthz")[0] == 503, TIMEOUT,
                          message="503 while Redis is down")
        status, body = http_get(self.port, "/healthz")
        self.assertIn("redis target default unreachable", body)
        self.redis.start()
        fixtures.wait_for(lambda: http_get(self.port, "/healthz")[0] == 200, TIMEOUT,
                          message="healthy again")
        self.assertEqual(self.w.stop(), 0)


if __name__ == "__main__":
    unittest.main()
