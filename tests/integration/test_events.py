"""Invalidation events for in-process caches (`publish:`) against real servers.

A pub/sub subscriber and a stream reader watch what `walbust run` sends: one message per
transaction and channel or stream, after the transaction's deletes, in commit order,
deduplicated across rules, Django-formatted where the rule says so, in bounded parts for
a large transaction, repeated (never lost) after a kill -9 before the acknowledgement,
and routed through a Redis Cluster. The subscriber example of examples/ is exercised too.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

import redis

import fixtures
from cluster_fixtures import RedisCluster, key_slot
from fixtures import (
    Lsn,
    PostgresServer,
    RedisServer,
    Walbust,
    blog_schema,
    commit_and_get_end_lsn,
    fill_keys,
    run_walbust,
    wait_for,
)

sys.path.insert(0, os.path.join(fixtures.SOURCE_DIR, "examples"))
import invalidation_subscriber  # noqa: E402  (examples/ is not a package)

SLOW = 4 if fixtures.binary_is_sanitized() else 1
CHANNEL = "cache-invalidation"
STREAM = "walbust:invalidations"
DJANGO_CHANNEL = "django-invalidation"

RULES = f"""\
version: 1
rules:
  - name: post-pages
    table: blog_post
    ignore_changes: [view_count]
    delete: ["post_detail_{{id}}", "home_page_posts", "category_posts_{{category_id}}"]
    publish:
      - channel: {CHANNEL}
      - stream: "{STREAM}"
        maxlen: 1000
  - name: comment-post-page
    table: blog_comment
    delete: ["post_detail_{{post_id}}"]
    publish:
      - channel: {CHANNEL}
      - stream: "{STREAM}"
        maxlen: 1000
  - name: category-pages
    table: blog_category
    key_format: django
    django: {{key_prefix: blog, version: 3}}
    delete: ["category_posts_{{id}}"]
    publish: [{{channel: {DJANGO_CHANNEL}}}]
"""


def log(msg):
    print(f"[events] {msg}", file=sys.stderr, flush=True)


class Subscriber:
    """Collects the JSON messages of channels; notes which of a message's keys still
    existed in Redis when it arrived (walbust sends it after the deletes)."""

    def __init__(self, client, *channels, probe=True):
        self.client = client
        self.probe = probe  # a cluster node cannot answer EXISTS for other nodes' keys
        self.messages = []  # (channel, dict)
        self.keys_alive_on_receipt = []
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(*channels)
        self._probe = redis.Redis(connection_pool=client.connection_pool)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            m = self.pubsub.get_message(timeout=0.1)
            if m is None or m["type"] != "message":
                continue
            event = json.loads(m["data"])
            alive = [k for k in event["keys"] if self.probe and self._probe.exists(k)]
            self.keys_alive_on_receipt.extend(alive)
            self.messages.append((m["channel"].decode(), event))

    def on(self, channel):
        return [e for c, e in self.messages if c == channel]

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()


def stream_events(client, stream=STREAM):
    out = []
    for _id, fields in client.xrange(stream):
        event = {k.decode(): v.decode() for k, v in fields.items()}
        event["xid"] = int(event["xid"])
        event["keys"] = json.loads(event["keys"])
        out.append(event)
    return out


def txid_and_commit(conn):
    """Commits conn's open transaction; returns (xid, an LSN before the commit, end LSN)."""
    with conn.cursor() as cur:
        cur.execute("SELECT txid_current(), pg_current_wal_insert_lsn()::text")
        xid, before = cur.fetchone()
    end = commit_and_get_end_lsn(conn)
    return int(xid), Lsn.parse(before), end


def metric(port, name, labels):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    want = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


class EventsCase(unittest.TestCase):
    """One PostgreSQL and Redis per class; each test has its own slot and data."""

    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer()
        cls.redis = RedisServer()
        cls.tmp = tempfile.mkdtemp(prefix="walbust-events-")
        cls.rules = fixtures.write_rules(cls.tmp, RULES, "event-rules.yaml")
        blog_schema(cls.pg)
        conn = cls.pg.connect()
        with conn.cursor() as cur:
            cur.execute("INSERT INTO blog_category (id, name, slug) SELECT i, 'c' || i, 'c' || i"
                        " FROM generate_series(1, 10) i")
            cur.execute("INSERT INTO blog_post (id, title, slug, author_id, category_id)"
                        " SELECT i, 'Post ' || i, 'p' || i, 1, 1 + i % 3 FROM generate_series(1, 50) i")
        conn.close()

    @classmethod
    def tearDownClass(cls):
        cls.redis.close()
        cls.pg.close()

    def setUp(self):
        self.r = self.redis.client()
        self.addCleanup(self.r.close)
        self.r.flushall()
        self.slot = "ev_" + self.id().split(".")[-1][5:40].lower()
        self.metrics_port = fixtures.free_port()
        self.w = Walbust(self.pg, self.redis, rules=[self.rules], slot=self.slot,
                         config={"metrics": {"listen": f"127.0.0.1:{self.metrics_port}"}})
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        fixtures.finish_walbust(self, self.w, timeout=10 * SLOW)
        self.w.close()
        try:
            self.pg.drop_slot(self.slot)
        except Exception:  # noqa: BLE001 - the slot may not exist
            pass

    def start(self, env=None):
        self.w.start(env=env)
        self.w.wait_streaming(timeout=30 * SLOW)
        self.w.sync(timeout=30 * SLOW)

    def subscribe(self, *channels):
        sub = Subscriber(self.r, *(channels or (CHANNEL,)))
        self.addCleanup(sub.close)
        return sub

    def wait_messages(self, sub, channel, count, timeout=30):
        self.w.wait_for(lambda: len(sub.on(channel)) >= count, timeout * SLOW,
                        message=f"{count} messages on {channel} (have {sub.on(channel)})")
        return sub.on(channel)


class ChannelAndStreamTest(EventsCase):
    def test_a_multi_statement_transaction_is_one_message_after_its_deletes(self):
        self.start()
        sub = self.subscribe(CHANNEL)
        keys = ["post_detail_1", "home_page_posts", "category_posts_2", "post_detail_2"]
        fill_keys(self.r, keys + ["post_detail_3"])
        conn = self.pg.connect(autocommit=False)
        with conn.cursor() as cur:
            cur.execute("UPDATE blog_post SET title = 'edited' WHERE id = 1")
            cur.execute("INSERT INTO blog_comment (post_id, author_name, body) VALUES (2, 'a', 'b')")
            cur.execute("UPDATE blog_post SET title = 'again' WHERE id = 1")
        xid, before, end = txid_and_commit(conn)
        conn.close()
        [event] = self.wait_messages(sub, CHANNEL, 1)
        self.assertEqual(list(event), ["lsn", "xid", "keys"])
        self.assertEqual(event["xid"], xid)
        self.assertEqual(event["keys"], keys)
        self.assertTrue(before <= Lsn.parse(event["lsn"]) < end, (before, event["lsn"], end))
        self.assertEqual(sub.keys_alive_on_receipt, [], "the event came before a delete")
        self.assertEqual(self.r.exists("post_detail_3"), 1)
        # The stream has the same event as fields.
        self.w.wait_for(lambda: stream_events(self.r), 10 * SLOW, message="a stream entry")
        self.assertEqual(stream_events(self.r), [{"lsn": event["lsn"], "xid": xid, "keys": keys}])
        info = self.r.xinfo_stream(STREAM)
        self.assertEqual(info["length"], 1)
        self.w.wait_confirmed(end, timeout=10 * SLOW)
        self.assertEqual(metric(self.metrics_port, "walbust_events_published_total",
                                {"target": "default", "kind": "channel"}), 1)
        self.assertEqual(metric(self.metrics_port, "walbust_events_published_total",
                                {"target": "default", "kind": "stream"}), 1)
        self.assertEqual(metric(self.metrics_port, "walbust_event_subscribers",
                                {"target": "default", "channel": CHANNEL}), 1)

    def test_a_rolled_back_transaction_sends_nothing(self):
        self.start()
        sub = self.subscribe(CHANNEL)
        conn = self.pg.connect(autocommit=False)
        with conn.cursor() as cur:
            cur.execute("UPDATE blog_post SET title = 'never' WHERE id = 5")
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("UPDATE blog_post SET title = 'kept' WHERE id = 6")
        conn.commit()
        conn.close()
        self.wait_messages(sub, CHANNEL, 1)
        self.w.sync()
        time.sleep(0.3)
        self.assertEqual([e["keys"] for e in sub.on(CHANNEL)],
                         [["post_detail_6", "home_page_posts", "category_posts_1"]])
        self.assertEqual([e["keys"] for e in stream_events(self.r)],
                         [["post_detail_6", "home_page_posts", "category_posts_1"]])

    def test_events_follow_commit_order_across_connections(self):
        self.start()
        sub = self.subscribe(CHANNEL)
        a = self.pg.connect(autocommit=False)
        b = self.pg.connect(autocommit=False)
        expected = []
        # Transactions begin in one order and commit in another: events follow the commits.
        for i in range(10, 30, 2):
            with a.cursor() as cur:
                cur.execute("UPDATE blog_post SET view_count = 0, title = 'a' WHERE id = %s", (i,))
            with b.cursor() as cur:
                cur.execute("UPDATE blog_post SET title = 'b' WHERE id = %s", (i + 1,))
            b.commit()
            a.commit()
            expected += [f"post_detail_{i + 1}", f"post_detail_{i}"]
        a.close()
        b.close()
        events = self.wait_messages(sub, CHANNEL, len(expected))
        self.assertEqual([e["keys"][0] for e in events], expected)
        lsns = [Lsn.parse(e["lsn"]) for e in events]
        self.assertEqual(lsns, sorted(set(lsns)), "one event per transaction, increasing lsn")
        self.w.wait_for(lambda: len(stream_events(self.r)) == len(expected), 10 * SLOW)
        self.assertEqual([e["lsn"] for e in stream_events(self.r)], [e["lsn"] for e in events])

    def test_keys_of_several_rules_are_deduplicated_and_django_keys_formatted(self):
        self.start()
        sub = self.subscribe(CHANNEL, DJANGO_CHANNEL)
        conn = self.pg.connect(autocommit=False)
        with conn.cursor() as cur:
            # post-pages and comment-post-page both produce post_detail_7.
            cur.execute("INSERT INTO blog_comment (post_id, author_name, body) VALUES (7, 'a', 'b')")
            cur.execute("UPDATE blog_post SET category_id = 3 WHERE id = 7")
            cur.execute("INSERT INTO blog_comment (post_id, author_name, body) VALUES (7, 'c', 'd')")
            cur.execute("UPDATE blog_category SET name = 'renamed' WHERE id = 4")
        xid, _, _ = txid_and_commit(conn)
        conn.close()
        [event] = self.wait_messages(sub, CHANNEL, 1)
        [django] = self.wait_messages(sub, DJANGO_CHANNEL, 1)
        self.assertEqual(event["keys"],
                         ["post_detail_7", "home_page_posts", "category_posts_3", "category_posts_2"])
        self.assertEqual(django, {"lsn": event["lsn"], "xid": xid, "keys": ["blog:3:category_posts_4"]})

    def test_an_offline_channel_subscriber_misses_events_a_stream_reader_does_not(self):
        self.start()
        conn = self.pg.connect()
        conn.cursor().execute("UPDATE blog_post SET title = 'x' WHERE id = 9")
        conn.close()
        self.w.sync()
        self.w.wait_confirmed(self.pg.current_wal_lsn(), timeout=10 * SLOW)
        self.assertEqual(metric(self.metrics_port, "walbust_event_subscribers",
                                {"target": "default", "channel": CHANNEL}), 0)
        self.assertEqual([e["keys"][0] for e in stream_events(self.r)], ["post_detail_9"])


class UnconfirmedEventTest(EventsCase):
    def test_a_transaction_is_not_acknowledged_until_redis_accepts_its_xadd(self):
        self.start()
        before_ack = self.pg.confirmed_flush_lsn(self.slot)
        self.r.set(STREAM, "not a stream")  # XADD now fails with WRONGTYPE
        conn = self.pg.connect(autocommit=False)
        with conn.cursor() as cur:
            cur.execute("UPDATE blog_post SET title = 'blocked' WHERE id = 13")
        xid, _, end = txid_and_commit(conn)
        conn.close()
        self.w.wait_for(lambda: (metric(self.metrics_port, "walbust_redis_errors_total",
                                        {"target": "default"}) or 0) >= 2, 30 * SLOW,
                        message="XADD retried")
        time.sleep(2.5)  # more than two status intervals
        self.assertLess(self.pg.confirmed_flush_lsn(self.slot), end,
                        f"acknowledged although XADD failed (was {before_ack})")
        self.r.delete(STREAM)
        self.w.wait_confirmed(end, timeout=30 * SLOW)
        [entry] = stream_events(self.r)
        self.assertEqual((entry["xid"], entry["keys"][0]), (xid, "post_detail_13"))


class MultiTargetTest(EventsCase):
    RULES = """\
version: 1
rules:
  - name: post-pages
    table: blog_post
    targets: [a]
    delete: ["post_detail_{id}"]
    publish: [{channel: inv}]
  - name: comment-post-page
    table: blog_comment
    delete: ["post_detail_{post_id}"]
    publish: [{channel: inv}]
"""

    def test_each_target_gets_its_own_event_with_the_keys_of_its_rules(self):
        other = RedisServer()
        self.addCleanup(other.close)
        rules = os.path.join(self.tmp, "multi-target-rules.yaml")
        with open(rules, "w") as f:
            f.write(self.RULES)
        self.w.close()
        self.w = Walbust(self.pg, None, rules=[rules], slot=self.slot, marker=False,
                         config={"redis": fixtures.DELETE,
                                 "targets": {"a": {"url": self.redis.url}, "b": {"url": other.url}}})
        self.w.start()
        self.w.wait_streaming(timeout=30 * SLOW)
        sub_a = self.subscribe("inv")
        client_b = other.client()
        self.addCleanup(client_b.close)
        sub_b = Subscriber(client_b, "inv")
        self.addCleanup(sub_b.close)
        conn = self.pg.connect(autocommit=False)
        with conn.cursor() as cur:
            cur.execute("UPDATE blog_post SET title = 't' WHERE id = 30")
            cur.execute("INSERT INTO blog_comment (post_id, author_name, body) VALUES (31, 'a', 'b')")
        xid, _, end = txid_and_commit(conn)
        conn.close()
        [a] = self.wait_messages(sub_a, "inv", 1)
        [b] = self.wait_messages(sub_b, "inv", 1)
        self.assertEqual(a["keys"], ["post_detail_30", "post_detail_31"])
        self.assertEqual(b, {"lsn": a["lsn"], "xid": xid, "keys": ["post_detail_31"]})
        self.w.wait_confirmed(end, timeout=30 * SLOW)


class ReloadTest(EventsCase):
    def test_a_reload_that_adds_publish_starts_events_with_the_next_transaction(self):
        rules = os.path.join(self.tmp, "reload-rules.yaml")
        with open(rules, "w") as f:
            f.write("version: 1\nrules:\n  - {name: p, table: blog_post, delete: ['post_detail_{id}']}\n")
        self.w.config["rules"] = [rules] + self.w.config["rules"][1:]
        self.w.write_config()
        self.start()
        sub = self.subscribe("inv")
        self.pg.execute("UPDATE blog_post SET title = 'before' WHERE id = 40")
        self.w.sync()
        with open(rules, "w") as f:
            f.write("version: 1\nrules:\n  - {name: p, table: blog_post, delete: ['post_detail_{id}'],"
                    " publish: [{channel: inv}]}\n")
        self.w.signal(signal.SIGHUP)
        self.w.wait_for_log(r"reloaded .*: 2 rules", timeout=20 * SLOW)
        self.pg.execute("UPDATE blog_post SET title = 'after' WHERE id = 41")
        [event] = self.wait_messages(sub, "inv", 1)
        self.assertEqual(event["keys"], ["post_detail_41"])


class SubscriberExampleTest(EventsCase):
    def test_the_example_keeps_a_process_local_cache_coherent(self):
        self.start()
        caches = {}
        listeners = []
        for kind in ("channel", "stream"):
            cache = invalidation_subscriber.LocalCache()
            client = self.redis.client()
            self.addCleanup(client.close)
            listener = invalidation_subscriber.InvalidationListener(
                client, cache, **{kind: CHANNEL if kind == "channel" else STREAM}, block_ms=100)
            listener.start()
            self.addCleanup(listener.stop)
            self.assertTrue(listener.ready.wait(10))
            for i in range(1, 51):
                cache.set(f"post_detail_{i}", f"page {i}")
            cache.set("home_page_posts", "home")
            cache.set("unrelated", "x")
            caches[kind] = cache
            listeners.append(listener)
        conn = self.pg.connect()
        conn.cursor().execute("UPDATE blog_post SET title = 'new' WHERE id IN (3, 4)")
        conn.cursor().execute("DELETE FROM blog_comment")
        conn.close()
        for kind, cache in caches.items():
            wait_for(lambda: "post_detail_3" not in cache.keys(), 20 * SLOW,
                     message=f"{kind} listener dropped post_detail_3")
            left = cache.keys()
            self.assertNotIn("post_detail_4", left)
            self.assertNotIn("home_page_posts", left)
            self.assertIn("unrelated", left)
            self.assertIn("post_detail_5", left)
        # A repeated event (same lsn) is recognised and not applied twice.
        event = {"lsn": "0/1", "xid": 1, "keys": ["post_detail_5"]}
        self.assertFalse(listeners[0].apply(event))
        self.assertIn("post_detail_5", caches["channel"].keys())


class CrashTest(EventsCase):
    def test_kill_9_before_the_acknowledgement_repeats_the_event(self):
        # A long status interval keeps walbust from acknowledging before the kill.
        self.w.config["postgres"]["status_interval"] = "1h"
        self.w.write_config()
        self.w.start()
        self.w.wait_streaming(timeout=30 * SLOW)
        sub = self.subscribe(CHANNEL)
        start_ack = self.pg.confirmed_flush_lsn(self.slot)
        conn = self.pg.connect(autocommit=False)
        with conn.cursor() as cur:
            cur.execute("UPDATE blog_post SET title = 'crash' WHERE id = 11")
        xid, _, end = txid_and_commit(conn)
        conn.close()
        [first] = self.wait_messages(sub, CHANNEL, 1)
        self.w.kill9()
        self.assertLess(self.pg.confirmed_flush_lsn(self.slot), end,
                        f"acknowledged before the kill (started at {start_ack})")
        self.w.start()
        self.w.wait_streaming(timeout=30 * SLOW)
        events = self.wait_messages(sub, CHANNEL, 2)
        self.assertEqual(events[1], first, "the same event again, with the same lsn")
        self.assertEqual(first["xid"], xid)
        self.assertEqual(len(stream_events(self.r)), 2)
        self.assertEqual(self.w.stop(timeout=10 * SLOW), 0)
        self.assertGreaterEqual(self.pg.confirmed_flush_lsn(self.slot), end)


class LargeTransactionTest(EventsCase):
    ROWS = 100_000
    # Release: the whole process stays under 64 MB. Sanitized: its baseline alone is near
    # 120 MB (shadow memory, redzones), so what is bounded is the growth over it.
    RSS_CEILING_KB = 64 * 1024

    def test_a_100k_row_transaction_is_sent_in_parts_with_bounded_rss(self):
        conn = self.pg.connect()
        with conn.cursor() as cur:
            cur.execute("INSERT INTO blog_post (id, title, slug, author_id, category_id)"
                        " SELECT i, 'Post', 'p', 1, 1 + i %% 10 FROM generate_series(1000, 999 + %s) i",
                        (self.ROWS,))
        conn.close()
        self.start(env=fixtures.bounded_quarantine_env())
        baseline = self.w.rss_kb()
        sub = self.subscribe(CHANNEL)
        self.w.start_rss_sampler(interval=0.01)
        t0 = time.monotonic()
        conn = self.pg.connect(autocommit=False)
        with conn.cursor() as cur:
            cur.execute("UPDATE blog_post SET title = 'big' WHERE id >= 1000")
        _, _, end = txid_and_commit(conn)
        conn.close()
        self.w.wait_confirmed(end, timeout=300 * SLOW)
        took = time.monotonic() - t0
        events = [e for e in self.wait_messages(sub, CHANNEL, 101, timeout=60)]
        time.sleep(0.5)
        events = sub.on(CHANNEL)
        keys = set()
        for n, e in enumerate(events, start=1):
            self.assertEqual(e["part"], n)
            self.assertEqual(e["last"], n == len(events))
            self.assertLessEqual(len(e["keys"]), 1000)
            self.assertEqual(e["lsn"], events[0]["lsn"])
            keys.update(e["keys"])
        expected = {f"post_detail_{i}" for i in range(1000, 1000 + self.ROWS)}
        expected |= {f"category_posts_{c}" for c in range(1, 11)} | {"home_page_posts"}
        self.assertEqual(keys, expected)
        stream = self.r.xinfo_stream(STREAM)
        self.assertLessEqual(stream["length"], 1100, "MAXLEN ~ 1000 trims the stream")
        peak = self.w.peak_rss_kb
        log(f"{self.ROWS}-row UPDATE: {len(events)} parts, acknowledged {took:.1f}s after the"
            f" commit started; RSS baseline {baseline} kB, peak {peak} kB")
        self.assertLess(peak - baseline if SLOW > 1 else peak, self.RSS_CEILING_KB)


class ClusterTargetTest(EventsCase):
    """A Redis Cluster target: PUBLISH through one node reaches a subscriber on another,
    XADD lands on the node owning the stream's slot."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cluster = RedisCluster(masters=3, replicas=0)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.w.close()  # replaced by one with the cluster target
        target = {"url": "redis://127.0.0.1:6379/0", "cluster": True, "nodes": self.cluster.seeds,
                  "timeout": "2s"}
        self.w = Walbust(self.pg, None, rules=[self.rules], slot=self.slot, marker=False,
                         config={"redis": fixtures.DELETE, "targets": {"cache": target},
                                 "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"}})

    def node_for(self, name):
        return self.cluster.node(self.cluster.master_of_slot_cached(key_slot(name)))

    def test_a_cluster_target_publishes_through_one_node_and_adds_to_the_streams_node(self):
        self.w.start()
        self.w.wait_streaming(timeout=30 * SLOW)
        channel_node = self.node_for(CHANNEL)
        other = next(n for n in self.cluster.live_nodes() if n.port != channel_node.port)
        sub = Subscriber(other.client(), CHANNEL, probe=False)
        self.addCleanup(sub.close)
        keys = ["post_detail_20", "home_page_posts", "category_posts_3", "post_detail_21",
                "category_posts_1"]
        self.cluster.set_keys(keys)
        conn = self.pg.connect(autocommit=False)
        with conn.cursor() as cur:
            cur.execute("UPDATE blog_post SET title = 'cluster' WHERE id IN (20, 21)")
        xid, _, end = txid_and_commit(conn)
        conn.close()
        self.w.wait_for(lambda: sub.on(CHANNEL), 30 * SLOW, message="the event on another node")
        [event] = sub.on(CHANNEL)
        self.assertEqual(event["xid"], xid)
        self.assertEqual(event["keys"], keys)
        self.assertEqual(self.cluster.existing(keys), set(), "deleted before the event")
        self.w.wait_confirmed(end, timeout=30 * SLOW)
        entries = stream_events(self.node_for(STREAM).client())
        self.assertEqual(entries, [{"lsn": event["lsn"], "xid": xid, "keys": event["keys"]}])
        self.assertEqual(metric(self.metrics_port, "walbust_events_published_total",
                                {"target": "cache", "kind": "stream"}), 1)


class RuleToolsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="walbust-events-cli-")

    def config(self, rules_text):
        rules = fixtures.write_rules(self.tmp, rules_text, "event-rules.yaml")
        path = os.path.join(self.tmp, "walbust.yaml")
        with open(path, "w") as f:
            f.write(f"postgres: {{dsn: 'host=127.0.0.1'}}\nredis: {{url: 'redis://127.0.0.1'}}\n"
                    f"rules: [{rules}]\nmetrics: {{listen: ''}}\n")
        return path, rules

    def test_check_reports_bad_publish_entries_with_their_position(self):
        path, rules = self.config("version: 1\nrules:\n  - name: a\n    table: t\n    delete: [k]\n"
                                  "    publish:\n      - {channel: c, stream: s}\n"
                                  "      - {stream: s, maxlen: 0}\n")
        r = run_walbust(["check", "-c", path])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(f"{rules}:7:", r.stderr)
        self.assertIn("'channel' and 'stream' cannot be used together", r.stderr)
        self.assertIn(f"{rules}:8:", r.stderr)
        self.assertIn("'maxlen' must be a positive integer", r.stderr)

    def test_rule_tests_check_published_keys(self):
        path, _ = self.config(RULES)
        cases = os.path.join(self.tmp, "cases.yaml")
        with open(cases, "w") as f:
            f.write(f"""cases:
  - name: a comment publishes its post's page
    table: blog_comment
    op: insert
    new: {{id: 1, post_id: 7}}
    expect:
      delete: [post_detail_7]
      publish: {{{CHANNEL}: [post_detail_7], "{STREAM}": [post_detail_7]}}
  - name: a wrong expectation fails
    table: blog_category
    op: update
    old: {{id: 4, name: a}}
    new: {{id: 4, name: b}}
    expect:
      delete: ["blog:3:category_posts_4"]
      publish: {{{DJANGO_CHANNEL}: [category_posts_4]}}
""")
        r = run_walbust(["test", "-c", path, cases])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("ok", r.stdout)
        self.assertIn(f"publish {DJANGO_CHANNEL}: missing [category_posts_4]; "
                      "unexpected [blog:3:category_posts_4]", r.stdout)
        self.assertIn("1 passed, 1 failed", r.stdout)


class DryRunTest(EventsCase):
    def test_dry_run_shows_publish_actions(self):
        # dry-run follows changes committed after it started: start it, then commit.
        p = subprocess.Popen([self.w.binary, "dry-run", "-c", self.w.config_path, "--format", "json",
                              "--max-changes", "1", "--duration", str(30 * SLOW)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=fixtures.walbust_env())
        self.addCleanup(lambda: p.poll() is None and p.kill())
        wait_for(lambda: any(s["slot_type"] == "logical" and s["temporary"]
                             for s in self.pg_slots()), 30 * SLOW, message="the temporary slot")
        self.pg.execute("UPDATE blog_post SET title = 'dry' WHERE id = 12")
        out, err = p.communicate(timeout=60 * SLOW)
        change = json.loads(out.decode().splitlines()[0])
        publish = [a for a in change["actions"] if a["action"] == "publish"]
        self.assertIn({"rule": "post-pages", "action": "publish", "key": "post_detail_12", "channel": CHANNEL},
                      publish)
        self.assertIn({"rule": "post-pages", "action": "publish", "key": "post_detail_12", "stream": STREAM},
                      publish)

    def pg_slots(self):
        rows = self.pg.query("SELECT slot_type, temporary FROM pg_replication_slots")
        return [{"slot_type": r[0], "temporary": r[1]} for r in rows]


if __name__ == "__main__":
    unittest.main()
