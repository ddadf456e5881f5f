#include "walbust/io/config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace walbust {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("walbust-config-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "rules.d");
    write("rules.d/a.yaml",
          "version: 1\nrules:\n  - name: a\n    table: t\n    delete: [\"k_{id}\"]\n");
    ::unsetenv("WALBUST_PG_DSN");
    ::unsetenv("WALBUST_REDIS_URL");
    ::unsetenv("CREDENTIALS_DIRECTORY");
    ::unsetenv("STATE_DIRECTORY");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const auto p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

  fs::path dir_;
};

TEST_F(ConfigTest, ReadReplicasAreOptionalAndValidated) {
  const auto ok = write("r.yaml", R"(postgres: {dsn: "host=db"}
rules: [rules.d/*.yaml]
replicas:
  dsns: ["host=r1 dbname=app", "host=r2 dbname=app"]
  poll_interval: 5ms
  grace: 250ms
  max_wait: 1m
)");
  Diagnostics d;
  auto c = load_config(ok, d);
  ASSERT_TRUE(c) << d.format();
  EXPECT_EQ(c->replicas.dsns,
            (std::vector<std::string>{"host=r1 dbname=app", "host=r2 dbname=app"}));
  EXPECT_EQ(c->replicas.poll_interval, std::chrono::milliseconds(5));
  EXPECT_EQ(c->replicas.grace, std::chrono::milliseconds(250));
  EXPECT_EQ(c->replicas.max_wait, std::chrono::milliseconds(60000));

  const auto none = write("n.yaml", "postgres: {dsn: \"host=db\"}\nrules: [rules.d/*.yaml]\n");
  c = load_config(none, d);
  ASSERT_TRUE(c) << d.format();
  EXPECT_TRUE(c->replicas.dsns.empty());
  EXPECT_EQ(c->replicas.grace, std::chrono::milliseconds(100));
  EXPECT_EQ(c->replicas.max_wait, std::chrono::milliseconds(30000));

  const auto bad = write("b.yaml", R"(postgres: {dsn: "host=db"}
rules: [rules.d/*.yaml]
replicas:
  dsns: []
  poll_intervall: 5ms
  grace: 2s
  max_wait: 1s
)");
  Diagnostics e;
  EXPECT_FALSE(load_config(bad, e));
  const std::string text = e.format();
  EXPECT_NE(text.find("b.yaml:4:9: error: replicas.dsns must be a non-empty list"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("b.yaml:5:3: error: unknown key 'poll_intervall' in replicas"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("b.yaml:7:13: error: replicas.max_wait must be at least replicas.grace"),
            std::string::npos)
      << text;
}

TEST_F(ConfigTest, LoadsEveryOptionAndDefaults) {
  const auto path = write("w.yaml", R"(postgres:
  dsn: "host=db dbname=app user=walbust"
  slot: cache_slot
  publication: cache_pub
  create_slot: false
  status_interval: 2s
redis:
  url: "redis://127.0.0.1:6380/3"
  delete_command: del
  timeout: 500ms
rules: [rules.d/*.yaml]
batch: {max_keys: 500, max_delay: 5ms}
state_dir: /var/lib/x
on_gap: flush_rules
metrics: {listen: ""}
log: {level: debug, format: json}
)");
  Diagnostics d;
  const auto c = load_config(path, d);
  ASSERT_TRUE(c) << d.format();
  EXPECT_EQ(c->postgres.dsn, "host=db dbname=app user=walbust");
  EXPECT_EQ(c->postgres.slot, "cache_slot");
  EXPECT_FALSE(c->postgres.create_slot);
  EXPECT_EQ(c->postgres.status_interval, std::chrono::milliseconds(2000));
  ASSERT_EQ(c->targets.size(), 1u);
  EXPECT_EQ(c->targets[0].settings.endpoint.port, 6380);
  EXPECT_EQ(c->targets[0].settings.endpoint.db, 3);
  EXPECT_EQ(c->targets[0].settings.delete_command, "del");
  EXPECT_EQ(c->batch.max_keys, 500u);
  EXPECT_EQ(c->batch.max_delay, std::chrono::milliseconds(5));
  EXPECT_EQ(c->on_gap, "flush_rules");
  EXPECT_EQ(c->metrics_listen, "");
  EXPECT_EQ(c->log.format, "json");
  const auto files = resolve_rule_files(*c, d);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0], (dir_ / "rules.d/a.yaml").string());
}

TEST_F(ConfigTest, ReportsEveryErrorWithPosition) {
  const auto path = write("w.yaml", R"(postgres:
  dsn: x
  slott: typo
  status_interval: 10
redis:
  url: "http://nope"
  delete_command: remove
rules: [a.yaml]
batch: {max_keys: 0}
on_gap: ignore
logs: {}
)");
  Diagnostics d;
  EXPECT_FALSE(load_config(path, d));
  const std::string p = path;
  EXPECT_EQ(d.format(),
            p + ":11:1: error: unknown key 'logs' in configuration (did you mean 'log'?)\n" + p +
                ":3:3: error: unknown key 'slott' in postgres (did you mean 'slot'?)\n" + p +
                ":4:20: error: postgres.status_interval must be a duration with a unit, e.g. "
                "500ms, 10s, 5m, 1h\n" +
                p + ":7:19: error: redis.delete_command must be one of: unlink, del\n" + p +
                ":9:19: error: batch.max_keys must be an integer from 1 to 1000000\n" + p +
                ":10:9: error: configuration.on_gap must be one of: fail, flush_rules, flushdb\n" +
                p +
                ":6:3: error: redis url: Redis URL must start with redis://, rediss://, valkey://, "
                "valkeys:// or unix://\n");
}

TEST_F(ConfigTest, InvalidYamlAndMissingFile) {
  Diagnostics d;
  EXPECT_FALSE(load_config(write("bad.yaml", "postgres: [unclosed\n"), d));
  ASSERT_EQ(d.size(), 1u);
  EXPECT_NE(d.items()[0].message.find("invalid YAML"), std::string::npos);
  Diagnostics d2;
  EXPECT_FALSE(load_config((dir_ / "missing.yaml").string(), d2));
  EXPECT_NE(d2.format().find("cannot open"), std::string::npos);
}

TEST_F(ConfigTest, EnvironmentOverridesAndCredentials) {
  const auto path =
      write("w.yaml", "postgres: {dsn: a}\nredis: {url: \"redis://h\"}\nrules: [rules.d/a.yaml]\n");
  fs::create_directories(dir_ / "creds");
  write("creds/pg-password", "s3cret\n");
  ::chmod((dir_ / "creds/pg-password").c_str(), 0600);
  ::setenv("WALBUST_PG_DSN", "host=other", 1);
  ::setenv("WALBUST_REDIS_URL", "redis://other:7000", 1);
  ::setenv("CREDENTIALS_DIRECTORY", (dir_ / "creds").c_str(), 1);
  ::setenv("STATE_DIRECTORY", "/var/lib/walbust:/var/lib/other", 1);
  Diagnostics d;
  const auto c = load_config(path, d);
  ASSERT_TRUE(c) << d.format();
  EXPECT_EQ(c->postgres.dsn, "host=other");
  EXPECT_EQ(c->targets[0].settings.endpoint.host, "other");
  EXPECT_EQ(c->targets[0].settings.endpoint.port, 7000);
  EXPECT_EQ(c->postgres.password_file, (dir_ / "creds/pg-password").string());
  EXPECT_EQ(read_password_file(c->postgres.password_file), "s3cret");
  EXPECT_EQ(c->targets[0].settings.password_file, "");  // no redis-password credential
  EXPECT_EQ(c->state_dir, "/var/lib/walbust");
}

TEST_F(ConfigTest, WorldReadablePasswordFileIsRefused) {
  const auto p = write("pw", "x");
  ::chmod(p.c_str(), 0644);
  EXPECT_THROW((void)read_password_file(p), std::runtime_error);
  ::chmod(p.c_str(), 0600);
  EXPECT_EQ(read_password_file(p), "x");
}

TEST_F(ConfigTest, RuleGlobThatMatchesNothingIsAnError) {
  const auto path = write("w.yaml", "postgres: {dsn: a}\nrules: [nothing/*.yaml]\n");
  Diagnostics d;
  const auto c = load_config(path, d);
  ASSERT_TRUE(c) << d.format();
  EXPECT_FALSE(c->redis_configured);
  (void)resolve_rule_files(*c, d);
  EXPECT_NE(d.format().find("matches no file"), std::string::npos);
}

}  // namespace
}  // namespace walbust

namespace walbust {
namespace {

TEST_F(ConfigTest, SeveralTargetsAndClusterSettings) {
  const auto path = write("w.yaml", R"(postgres: {dsn: a}
targets:
  eu: {url: "redis://eu:6379/1"}
  sessions: {cluster: true, nodes: ["10.0.0.5:7000", "10.0.0.6:7000"], timeout: 1s}
rules: [rules.d/a.yaml]
)");
  Diagnostics d;
  const auto c = load_config(path, d);
  ASSERT_TRUE(c) << d.format();
  ASSERT_EQ(c->targets.size(), 2u);
  EXPECT_EQ(c->targets[0].name, "eu");
  EXPECT_EQ(c->targets[0].settings.endpoint.db, 1);
  EXPECT_EQ(c->targets[1].name, "sessions");
  EXPECT_TRUE(c->targets[1].settings.cluster);
  EXPECT_EQ(c->targets[1].settings.nodes,
            (std::vector<std::string>{"10.0.0.5:7000", "10.0.0.6:7000"}));
}

TEST_F(ConfigTest, TargetErrors) {
  const auto path = write("w.yaml", R"(postgres: {dsn: a}
redis: {url: "redis://h"}
targets:
  x: {cluster: true}
rules: [rules.d/a.yaml]
)");
  Diagnostics d;
  EXPECT_FALSE(load_config(path, d));
  EXPECT_EQ(d.format(), path + ":4:3: error: use either redis: or targets:, not both\n");
  const auto cluster = write(
      "c.yaml", "postgres: {dsn: a}\ntargets:\n  x: {cluster: true}\nrules: [rules.d/a.yaml]\n");
  Diagnostics d2;
  EXPECT_FALSE(load_config(cluster, d2));
  const auto bad_port =
      write("p.yaml",
            "postgres: {dsn: a}\ntargets:\n  x: {cluster: true, nodes: [\"h:port\", \"h:7000\"]}\n"
            "rules: [rules.d/a.yaml]\n");
  Diagnostics d3;
  EXPECT_FALSE(load_config(bad_port, d3));
  EXPECT_EQ(
      d3.format(),
      bad_port +
          ":3:30: error: targets.x.nodes entries must be host:port with a port from 1 to 65535\n");
  EXPECT_EQ(d2.format(),
            cluster + ":3:6: error: targets.x: cluster: true needs nodes: [host:port, ...]\n");
}

TEST_F(ConfigTest, RulesMayOnlyNameConfiguredTargets) {
  const auto rules_path = write("rules.d/t.yaml",
                                "version: 1\nrules:\n  - name: t\n    table: t\n"
                                "    targets: [eu, moon]\n    delete: [\"k\"]\n");
  const auto path =
      write("w.yaml", "postgres: {dsn: a}\ntargets:\n  eu: {url: \"redis://eu\"}\nrules: [" +
                          rules_path + "]\n");
  Diagnostics d;
  const auto c = load_config(path, d);
  ASSERT_TRUE(c) << d.format();
  const RuleSet rules = load_rules(*c, d);
  ASSERT_TRUE(d.empty()) << d.format();
  check_rule_targets(*c, rules, d);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d.items()[0].format(),
            rules_path + ":3: error: rule t: unknown target 'moon' (configured: eu)");
}

}  // namespace
}  // namespace walbust

namespace walbust {
namespace {

TEST_F(ConfigTest, TlsWaitAndSentinelSections) {
  const std::string key = write("client.key", "not a real key\n");
  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  const std::string ca = write("ca.pem", "ca\n");
  const std::string cert = write("client.pem", "cert\n");
  const std::string path =
      write("w.yaml",
            "postgres: {dsn: x}\nrules: [rules.d/*.yaml]\ntargets:\n"
            "  managed:\n    url: valkeys://cache:6380/2\n"
            "    tls: {ca_file: " +
                ca + ", cert_file: " + cert + ", key_file: " + key +
                ", server_name: cache.internal}\n"
                "    wait: {replicas: 2, timeout: 50ms}\n"
                "  ha:\n    sentinel: {master: mymaster, nodes: ['s1:26379', 's2:26379']}\n"
                "    db: 3\n    tls: {}\n");
  Diagnostics d;
  const auto c = load_config(path, d);
  ASSERT_TRUE(c) << d.format();
  const RedisSettings& m = c->targets[0].settings;
  EXPECT_TRUE(m.tls.enabled);
  EXPECT_TRUE(m.endpoint.tls);
  EXPECT_EQ(m.endpoint.db, 2);
  EXPECT_EQ(m.tls.server_name, "cache.internal");
  EXPECT_EQ(m.wait.replicas, 2);
  EXPECT_EQ(m.wait.timeout, std::chrono::milliseconds(50));
  const RedisSettings& h = c->targets[1].settings;
  EXPECT_EQ(h.sentinel.master, "mymaster");
  EXPECT_EQ(h.sentinel.nodes, (std::vector<std::string>{"s1:26379", "s2:26379"}));
  EXPECT_EQ(h.endpoint.db, 3);
  EXPECT_TRUE(h.tls.enabled);
  EXPECT_TRUE(h.tls.verify);
}

TEST_F(ConfigTest, TlsAndSentinelMistakesArePositioned) {
  const std::string key = write("open.key", "k\n");
  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read,
                  fs::perm_options::replace);
  const std::string path =
      write("w.yaml",
            "postgres: {dsn: x}\nrules: [rules.d/*.yaml]\ntargets:\n"
            "  a:\n    url: redis://h:1/0\n    tls: {verify: false}\n"
            "  b:\n    url: rediss://h:1/0\n    sentinel: {master: m, nodes: ['s:1']}\n"
            "  c:\n    url: rediss://h:1/0\n"
            "    tls: {cert_file: /nonexistent.pem, key_file: " +
                key +
                "}\n"
                "  d:\n    cluster: true\n    nodes: ['n:1']\n    tls: {server_name: x}\n"
                "  e:\n    url: rediss://h:1/0\n    db: 1\n    sentinel: {nodes: []}\n");
  Diagnostics d;
  EXPECT_FALSE(load_config(path, d));
  const std::string out = d.format();
  EXPECT_NE(
      out.find(path + ":6:10: error: targets.a: tls: with a plain redis:// url; say rediss://"),
      std::string::npos)
      << out;
  EXPECT_NE(out.find(path + ":8:10: error: targets.b: use url or sentinel, not both"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("targets.c.tls.cert_file /nonexistent.pem: cannot read it"), std::string::npos)
      << out;
  EXPECT_NE(out.find("targets.c.tls.key_file " + key + ": it is readable by others"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("targets.d.tls.server_name would verify every node against one name"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("targets.e.sentinel.master must name the master"), std::string::npos) << out;
  EXPECT_NE(out.find("targets.e.sentinel.nodes must list the sentinels"), std::string::npos) << out;
}

}  // namespace
}  // namespace walbust
