#pragma once
// walbust.yaml (README "Configuration reference"): loaded and validated completely; every problem
// is reported with file:line:column and no partial configuration is ever used.
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "walbust/core/diagnostics.h"
#include "walbust/core/redis_url.h"
#include "walbust/core/rules.h"
#include "walbust/io/logging.h"
#include "walbust/io/redis_tls.h"

namespace walbust {

struct PostgresSettings {
  std::string dsn = "host=127.0.0.1 port=5432 dbname=postgres";
  std::string password_file;  // resolved: explicit, else $CREDENTIALS_DIRECTORY/pg-password
  std::string slot = "walbust";
  std::string publication = "walbust";
  bool create_slot = true;
  std::chrono::milliseconds status_interval{10000};
};

// wait: a batch counts as confirmed only once WAIT reports `replicas` replicas have it.
struct RedisWaitSettings {
  int replicas = 0;  // 0: no WAIT
  std::chrono::milliseconds timeout{100};
};

// sentinel: the master is found through these sentinels.
struct SentinelSettings {
  std::string master;              // the name the sentinels monitor; empty: no sentinel
  std::vector<std::string> nodes;  // host:port, asked in this order
  std::string password_file;       // the sentinels' own password
};

struct RedisSettings {
  std::string url = "redis://127.0.0.1:6379/0";
  RedisEndpoint endpoint;                 // parsed from url
  std::string password_file;              // resolved like PostgresSettings::password_file
  std::string delete_command = "unlink";  // unlink | del
  std::chrono::milliseconds timeout{2000};
  bool cluster = false;            // Redis Cluster: keys routed by hash slot (docs/scale-out.md)
  std::vector<std::string> nodes;  // cluster seed nodes, host:port
  RedisTlsSettings tls;            // enabled by rediss:// / valkeys:// or a tls: section
  RedisWaitSettings wait;
  SentinelSettings sentinel;  // used when sentinel.master is set
  int db = 0;                 // the database of a sentinel target (others: in the url)
};

struct RedisTarget {
  std::string name;  // "default" for a plain `redis:` section
  RedisSettings settings;
};

struct BatchSettings {
  std::size_t max_keys = 10000;
  std::chrono::milliseconds max_delay{0};
};

// Read replicas the application reads from: every delete is repeated once each of them
// replayed the transaction (see README, "Read replicas").
struct ReplicaSettings {
  std::vector<std::string> dsns;  // empty: no replicas, nothing is repeated
  std::chrono::milliseconds poll_interval{10};
  std::chrono::milliseconds grace{100};
  std::chrono::milliseconds max_wait{30000};
};

struct Config {
  std::string path;  // the file it was loaded from
  PostgresSettings postgres;
  bool redis_configured = false;  // false when the file has no redis: section
  std::vector<RedisTarget> targets;
  std::vector<std::string> rules;  // patterns as written
  BatchSettings batch;
  std::string state_dir;        // resolved: explicit, else $STATE_DIRECTORY, else "."
  std::string on_gap = "fail";  // fail | flush_rules | flushdb
  std::string metrics_listen = "127.0.0.1:9650";
  LogSettings log;
  ReplicaSettings replicas;
};

// -c value, else $WALBUST_CONFIG, else /etc/walbust/walbust.yaml.
[[nodiscard]] std::string default_config_path();

// Reads and validates the file; applies WALBUST_PG_DSN / WALBUST_REDIS_URL. Returns
// nullopt when diags got any error.
[[nodiscard]] std::optional<Config> load_config(const std::string& path, Diagnostics& diags);

// The rules files named by the config (globs expanded, relative paths against the
// config's directory), sorted and de-duplicated. A pattern that matches nothing is an error.
[[nodiscard]] std::vector<std::string> resolve_rule_files(const Config& config, Diagnostics& diags);

// Reads every rules file and builds the rule set. Check diags before using the result.
[[nodiscard]] RuleSet load_rule_files(const std::vector<std::string>& files, Diagnostics& diags);
// resolve_rule_files + load_rule_files.
[[nodiscard]] RuleSet load_rules(const Config& config, Diagnostics& diags);

// Rules may name targets (`targets: [name]`); each name must be a configured target.
void check_rule_targets(const Config& config, const RuleSet& rules, Diagnostics& diags);

// Reads a whole file; nullopt with a diagnostic when it cannot be read.
[[nodiscard]] std::optional<std::string> read_text_file(const std::string& path,
                                                        Diagnostics& diags);

// Reads a password file (trailing newline removed). Empty path: no password. Throws
// std::runtime_error with the path (never the content) when it cannot be read.
[[nodiscard]] std::string read_password_file(const std::string& path);

}  // namespace walbust
