#pragma once
// The configuration as plain values (README "Configuration reference"): what walbust.yaml
// says once loaded and validated. No I/O here; io/config.h loads it. Every struct compares
// member by member (defaulted ==), so a new field is compared without anyone remembering to:
// a reload can never miss a changed setting (see core/reload_plan.h).
#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "walbust/core/redis_url.h"

namespace walbust {

struct PostgresSettings {
  std::string dsn = "host=127.0.0.1 port=5432 dbname=postgres";
  std::string password_file;  // resolved: explicit, else $CREDENTIALS_DIRECTORY/pg-password
  std::string slot = "walbust";
  std::string publication = "walbust";
  bool create_slot = true;
  std::chrono::milliseconds status_interval{10000};

  bool operator==(const PostgresSettings&) const = default;
};

struct RedisTlsSettings {
  bool enabled = false;     // rediss://, valkeys://, or a tls: section
  std::string ca_file;      // empty: the system's trust store
  std::string cert_file;    // client certificate (chain), for servers that require one
  std::string key_file;     // its private key; refused when readable by others
  std::string server_name;  // SNI and the name verified; empty: the host connected to
  bool verify = true;       // false: no chain or name checks (testing only)

  bool operator==(const RedisTlsSettings&) const = default;
};

// wait: a batch counts as confirmed only once WAIT reports `replicas` replicas have it.
struct RedisWaitSettings {
  int replicas = 0;  // 0: no WAIT
  std::chrono::milliseconds timeout{100};

  bool operator==(const RedisWaitSettings&) const = default;
};

// sentinel: the master is found through these sentinels.
struct SentinelSettings {
  std::string master;              // the name the sentinels monitor; empty: no sentinel
  std::vector<std::string> nodes;  // host:port, asked in this order
  std::string password_file;       // the sentinels' own password

  bool operator==(const SentinelSettings&) const = default;
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

  bool operator==(const RedisSettings&) const = default;
};

struct RedisTarget {
  std::string name;  // "default" for a plain `redis:` section
  RedisSettings settings;

  bool operator==(const RedisTarget&) const = default;
};

struct BatchSettings {
  std::size_t max_keys = 10000;
  std::chrono::milliseconds max_delay{0};

  bool operator==(const BatchSettings&) const = default;
};

// Read replicas the application reads from: every delete is repeated once each of them
// replayed the transaction (see README, "Read replicas").
struct ReplicaSettings {
  std::vector<std::string> dsns;  // empty: no replicas, nothing is repeated
  std::chrono::milliseconds poll_interval{10};
  std::chrono::milliseconds grace{100};
  std::chrono::milliseconds max_wait{30000};

  bool operator==(const ReplicaSettings&) const = default;
};

struct LogSettings {
  std::string level = "info";   // trace | debug | info | warn | error
  std::string format = "auto";  // auto | text | json

  bool operator==(const LogSettings&) const = default;
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

  bool operator==(const Config&) const = default;
};

}  // namespace walbust
