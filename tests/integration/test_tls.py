"""TLS to Redis end to end: walbust against a TLS-only redis-server that requires a client
certificate (certificates made by fixtures.TlsCertificates with openssl). Every failed
handshake must be one clear log line with the reason, delete nothing and acknowledge
nothing; once the configuration (or the server's certificate) is fixed, walbust catches
up with nothing lost. Expected keys come from the audit-trigger oracle."""

import os
import sys
import time
import unittest

import fixtures
from fixtures import (
    PostgresServer,
    RedisServer,
    TlsCertificates,
    Walbust,
    audit_expected_keys,
    blog_all_keys,
    blog_rules_path,
    blog_sample_data,
    blog_schema,
    commit_and_get_end_lsn,
    existing_keys,
    fill_keys,
    run_walbust,
)

SLOW = 4 if fixtures.binary_is_sanitized() else 1
ALL_KEYS = blog_all_keys(range(1, 61), range(1, 9), range(1, 9))


def log(msg):
    print(f"[tls] {msg}", file=sys.stderr, flush=True)


class TlsCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = TlsCertificates()
        cls.pg = PostgresServer()
        blog_schema(cls.pg, audit=True)
        blog_sample_data(cls.pg, categories=6, posts=40, comments=60, authors=6, seed=5)

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()
        cls.certs.close()

    def start(self, redis, slot, tls=None, url=None):
        config = {"redis": {"url": url or redis.url}}
        if tls is not None:
            config["redis"]["tls"] = tls
        w = Walbust(self.pg, redis, rules=[blog_rules_path()], slot=slot, config=config)
        self.addCleanup(fixtures.finish_walbust, self, w, 10 * SLOW)
        w.start()
        w.wait_streaming(timeout=30 * SLOW)
        return w

    def change_posts(self, ids):
        """Updates posts in one transaction; returns (expected keys, end LSN)."""
        mark = audit_expected_keys(self.pg)[1]
        with self.pg.connect(autocommit=False) as conn:
            cur = conn.cursor()
            cur.execute("UPDATE blog_post SET title = title || '!', category_id = 1 + category_id %% 6"
                        " WHERE id = ANY(%s)", (list(ids),))
            end = commit_and_get_end_lsn(conn)
        conn.close()
        return audit_expected_keys(self.pg, mark)[0], end


class TlsEndToEnd(TlsCase):
    def test_deletes_reach_a_tls_only_redis_with_exactly_the_expected_keys(self):
        redis = RedisServer(tls=self.certs)
        self.addCleanup(redis.close)
        r = redis.client()
        w = self.start(redis, "tls_e2e", tls=self.certs.client_tls())
        fill_keys(r, ALL_KEYS)
        expected = set()
        for first in range(1, 30, 5):
            keys, _ = self.change_posts(range(first, first + 3))
            expected |= keys
        w.sync(timeout=60 * SLOW)
        self.assertGreater(len(expected), 10)
        self.assertEqual(ALL_KEYS - existing_keys(r, ALL_KEYS), expected)
        self.assertNotIn("retrying with backoff", w.log())

    def test_the_valkeys_spelling_and_a_host_name_work_like_rediss(self):
        # valkeys:// turns TLS on like rediss://; the tls: section adds the CA and certificate.
        redis = RedisServer(tls=self.certs)
        self.addCleanup(redis.close)
        r = redis.client()
        w = self.start(redis, "tls_valkey", tls=self.certs.client_tls(),
                       url=f"valkeys://localhost:{redis.port}/0")
        fill_keys(r, ALL_KEYS)
        keys, _ = self.change_posts([41, 42])
        w.sync(timeout=60 * SLOW)
        self.assertEqual(ALL_KEYS - existing_keys(r, ALL_KEYS), keys & ALL_KEYS)


class ClusterRedis:
    """What the Walbust driver needs from a Redis (url, client) for a cluster target."""

    url = ""

    def __init__(self, cluster):
        self.cluster = cluster

    def client(self, **kwargs):
        return self.cluster.client(**kwargs)


class TlsCluster(TlsCase):
    def test_a_tls_cluster_gets_exactly_the_expected_deletes_on_every_master(self):
        # Three masters with --tls-cluster yes; each node's certificate is checked against
        # the address CLUSTER SLOTS gives for it.
        from cluster_fixtures import RedisCluster

        cluster = RedisCluster(masters=3, replicas=0, tls=self.certs)
        self.addCleanup(cluster.close)
        target = {"cluster": True, "nodes": cluster.seeds[:1], "tls": self.certs.client_tls()}
        w = Walbust(self.pg, ClusterRedis(cluster), rules=[blog_rules_path()], slot="tls_cluster",
                    config={"redis": fixtures.DELETE, "targets": {"cache": target}})
        self.addCleanup(fixtures.finish_walbust, self, w, 10 * SLOW)
        w.start()
        w.wait_streaming(timeout=30 * SLOW)
        cluster.set_keys(ALL_KEYS)
        expected = set()
        for first in (20, 26, 32):
            keys, _ = self.change_posts(range(first, first + 3))
            expected |= keys
        w.sync(timeout=60 * SLOW)
        self.assertGreater(len(expected), 10)
        self.assertEqual(ALL_KEYS - cluster.existing(ALL_KEYS), expected & ALL_KEYS)
        self.assertNotIn("retrying with backoff", w.log())


class TlsFailures(TlsCase):
    def assert_refused_then_fixed(self, slot, reason, redis, tls, fix):
        """Starts walbust with a configuration the handshake refuses; checks the log line,
        that nothing was deleted or acknowledged; applies `fix` and checks the catch-up."""
        r = redis.client()
        fill_keys(r, ALL_KEYS)
        w = self.start(redis, slot, tls=tls)
        keys, end = self.change_posts([1, 2, 3])
        w.wait_for_log(rf"target default \(127\.0\.0\.1:{redis.port}/0 \(tls\)\).*{reason}", timeout=30 * SLOW)
        time.sleep(1.5)  # several retries, status updates included
        self.assertEqual(existing_keys(r, keys), keys, "nothing may be deleted without a verified server")
        confirmed = self.pg.confirmed_flush_lsn(slot)
        self.assertTrue(confirmed is None or confirmed < end, f"acknowledged {confirmed} past {end}")
        lines = [l for l in w.log().splitlines() if "retrying with backoff" in l]
        self.assertEqual(len(lines), 1, "one line per outage, not one per attempt")
        log(lines[0])
        w.stop(timeout=10 * SLOW)
        fix(w)
        w.start()
        w.wait_confirmed(end, timeout=60 * SLOW)
        self.assertEqual(existing_keys(r, keys), set(), "caught up after the fix")

    def test_an_unknown_ca_is_refused_until_the_right_ca_is_configured(self):
        redis = RedisServer(tls=self.certs)
        self.addCleanup(redis.close)

        def fix(w):
            w.config["redis"]["tls"]["ca_file"] = self.certs.ca
            w.write_config()

        self.assert_refused_then_fixed("tls_wrong_ca", "unknown CA", redis,
                                       self.certs.client_tls(ca_file=self.certs.other_ca), fix)

    def test_a_certificate_for_another_name_is_refused(self):
        redis = RedisServer(tls=self.certs, server_cert="wrong_name")
        self.addCleanup(redis.close)

        def fix(w):
            redis.server_cert = "server"
            redis.restart()
            fill_keys(redis.client(), ALL_KEYS)  # the restart emptied it; the keys must go again

        self.assert_refused_then_fixed("tls_wrong_name", "name mismatch", redis, self.certs.client_tls(), fix)

    def test_an_expired_server_certificate_is_refused(self):
        redis = RedisServer(tls=self.certs, server_cert="expired")
        self.addCleanup(redis.close)

        def fix(w):
            redis.server_cert = "server"
            redis.restart()
            fill_keys(redis.client(), ALL_KEYS)

        self.assert_refused_then_fixed("tls_expired", "certificate expired", redis, self.certs.client_tls(), fix)

    def test_a_missing_client_certificate_is_reported(self):
        redis = RedisServer(tls=self.certs)
        self.addCleanup(redis.close)

        def fix(w):
            w.config["redis"]["tls"] = self.certs.client_tls()
            w.write_config()

        self.assert_refused_then_fixed("tls_no_client_cert", "client certificate", redis,
                                       {"ca_file": self.certs.ca}, fix)


class PostgresTls(unittest.TestCase):
    """PostgreSQL with ssl = on and a hostssl-only pg_hba.conf line for walbust's role:
    libpq's sslmode=verify-full in the DSN applies to every connection walbust opens."""

    @classmethod
    def setUpClass(cls):
        cls.certs = TlsCertificates()
        cls.pg = PostgresServer()
        blog_schema(cls.pg, audit=True)
        blog_sample_data(cls.pg, categories=6, posts=40, comments=60, authors=6, seed=9)
        cls.pg.enable_tls(cls.certs)

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()
        cls.certs.close()

    def verify_full_dsn(self):
        # hostaddr connects, host is the name verified against the certificate.
        return (f"host=localhost hostaddr=127.0.0.1 port={self.pg.port} dbname={self.pg.DATABASE}"
                f" user={self.pg.ROLE} sslmode=verify-full sslrootcert={self.certs.ca}")

    def config(self, dsn, redis):
        path = os.path.join(self.certs.dir, "pg-tls.yaml")
        with open(path, "w") as f:
            f.write(f"postgres: {{dsn: '{dsn}', slot: pg_tls}}\nredis: {{url: '{redis.url}'}}\n"
                    f"rules: [{blog_rules_path()}]\nmetrics: {{listen: ''}}\n")
        return path

    def test_check_db_reports_an_encrypted_connection_and_plain_tcp_is_refused(self):
        redis = RedisServer()
        self.addCleanup(redis.close)
        res = run_walbust(["check", "--db", "-c", self.config(self.verify_full_dsn(), redis)])
        self.assertIn("connection: encrypted (TLSv1.3", res.stdout, res.stdout + res.stderr)
        plain = self.verify_full_dsn().replace("sslmode=verify-full", "sslmode=disable")
        res = run_walbust(["check", "--db", "-c", self.config(plain, redis)])
        self.assertEqual(res.returncode, 1)
        self.assertIn("no encryption", res.stderr)
        wrong_ca = self.verify_full_dsn().replace(self.certs.ca, self.certs.other_ca)
        res = run_walbust(["check", "--db", "-c", self.config(wrong_ca, redis)])
        self.assertEqual(res.returncode, 1)
        self.assertIn("certificate verify failed", res.stderr)

    def streaming_walbust(self, slot):
        """walbust on its own Redis over a verify-full replication connection, streaming;
        returns a client of that Redis and the walbust."""
        redis = RedisServer()
        self.addCleanup(redis.close)
        w = Walbust(self.pg, redis, rules=[blog_rules_path()], slot=slot,
                    config={"postgres": {"dsn": self.verify_full_dsn()}})
        self.addCleanup(fixtures.finish_walbust, self, w, 10 * SLOW)
        w.start()
        w.wait_streaming(timeout=30 * SLOW)
        return redis.client(), w

    def test_deletes_flow_over_a_verify_full_replication_connection(self):
        r, w = self.streaming_walbust("pg_tls_e2e")
        fill_keys(r, ALL_KEYS)
        mark = audit_expected_keys(self.pg)[1]
        self.pg.execute("UPDATE blog_post SET title = title || '?' WHERE id <= 5")
        expected = audit_expected_keys(self.pg, mark)[0]
        w.sync(timeout=60 * SLOW)
        self.assertEqual(ALL_KEYS - existing_keys(r, ALL_KEYS), expected)
        ssl = self.pg.query("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_replication r ON r.pid = s.pid"
                            "", user="postgres", dbname="postgres")
        self.assertTrue(ssl and all(row[0] for row in ssl), f"walsender connections: {ssl}")

    def test_large_rows_over_tls_are_deleted_as_each_commits(self):
        # Rows of 100-350 KB reach walbust in TLS records larger than libpq's free buffer, so
        # decrypted bytes wait in the TLS session where poll() does not see them: each
        # transaction's keys must still go within seconds, not at the next keepalive.
        r, w = self.streaming_walbust("pg_tls_large")
        for post in range(1, 9):
            key = f"post_detail_{post}"
            r.set(key, b"x")
            self.pg.execute(f"UPDATE blog_post SET content = repeat(md5(random()::text), {3000 + 977 * post})"
                            f" WHERE id = {post}")
            fixtures.wait_for(lambda: not r.exists(key), timeout=5 * SLOW,
                              message=f"{key} still cached 5 s after its commit")


class TlsConfigCheck(unittest.TestCase):
    def setUp(self):
        self.certs = TlsCertificates()
        self.addCleanup(self.certs.close)
        self.dir = self.certs.dir
        with open(os.path.join(self.dir, "rules.yaml"), "w") as f:
            f.write("version: 1\nrules: []\n")

    def check(self, redis_section):
        path = os.path.join(self.dir, "walbust.yaml")
        with open(path, "w") as f:
            f.write("postgres: {dsn: 'host=127.0.0.1'}\nrules: [rules.yaml]\nredis:\n" + redis_section)
        return path, run_walbust(["check", "-c", path])

    def test_check_reports_tls_mistakes_with_their_position(self):
        readable = os.path.join(self.dir, "readable.key")
        with open(self.certs.client_key) as src, open(readable, "w") as dst:
            dst.write(src.read())
        os.chmod(readable, 0o644)
        path, res = self.check(
            "  url: redis://127.0.0.1:6380/0\n"
            "  tls:\n"
            f"    ca_file: {self.dir}/missing.pem\n"
            f"    cert_file: {self.certs.client_cert}\n"
            f"    key_file: {readable}\n"
            "  sentinel: {master: m, nodes: ['127.0.0.1:26379']}\n")
        self.assertEqual(res.returncode, 2, res.stderr)
        err = res.stderr
        self.assertIn(f"{path}:6:5: error: redis: tls: with a plain redis:// url; say rediss://", err)
        self.assertIn(f"{path}:6:14: error: redis.tls.ca_file {self.dir}/missing.pem: cannot read it", err)
        self.assertIn(f"{path}:8:15: error: redis.tls.key_file {readable}: it is readable by others", err)
        self.assertIn(f"{path}:4:8: error: redis: use url or sentinel, not both", err)

    def test_check_accepts_a_complete_tls_section(self):
        _, res = self.check("  url: rediss://127.0.0.1:6380/0\n"
                            f"  tls: {{ca_file: {self.certs.ca}, cert_file: {self.certs.client_cert},"
                            f" key_file: {self.certs.client_key}}}\n"
                            "  wait: {replicas: 1, timeout: 50ms}\n")
        self.assertEqual(res.returncode, 0, res.stderr)


if __name__ == "__main__":
    unittest.main()
