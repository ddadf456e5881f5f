#pragma once
// What the pipeline needs from one Redis target, whatever its topology: a single server,
// a Redis Cluster or a Sentinel-managed master, over TCP, TLS or a unix socket (one
// BatchWriter over a RedisRouter). Every method throws RedisError (Retry or Fatal).
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "walbust/core/rules.h"

namespace walbust {

struct RedisSettings;
class RedisClient;

// One invalidation event Redis confirmed.
struct EventResult {
  PublishKind kind = PublishKind::Channel;
  std::string name;
  long long subscribers = -1;  // PUBLISH: clients that received it; -1 for a stream
};

struct BatchResult {
  std::size_t keys = 0;      // distinct keys sent for deletion (patterns expanded)
  long long existed = 0;     // keys Redis reported as removed
  std::size_t commands = 0;  // commands sent
  std::size_t patterns = 0;  // patterns scanned
  std::vector<EventResult> events;
};

class KeySink {
 public:
  virtual ~KeySink() = default;

  virtual void connect() = 0;
  virtual void close() = 0;
  [[nodiscard]] virtual bool connected() const = 0;
  // "127.0.0.1:6379/0", the cluster's seed nodes, "sentinel NAME": never a password.
  [[nodiscard]] virtual std::string describe() const = 0;
  // The master in use ("host:port") for a sentinel target, for health and metrics; "".
  [[nodiscard]] virtual std::string current_master() const { return ""; }

  // Deletes keys (deduplicated), sets version keys, expands patterns (SCAN + delete) and
  // sends events after the deletes before them. Either everything was confirmed by Redis
  // or it throws; the caller resends the whole batch on Retry (deletes and version SETs
  // are idempotent; a resent event is a repeat consumers recognise by its lsn).
  virtual BatchResult apply(const std::vector<const Action*>& actions) = 0;

  // Read-only (dry-run --check-redis): EXISTS per key; SCAN count of a pattern's keys,
  // stopping after about `limit` keys scanned.
  [[nodiscard]] virtual std::vector<bool> exists(const std::vector<std::string>& keys) = 0;
  [[nodiscard]] virtual std::size_t count_matching(const std::string& pattern, std::size_t limit,
                                                   bool& truncated) = 0;
  // FLUSHDB on every node (on_gap: flushdb).
  virtual void flush_database() = 0;
  // A connection to every master holding the target's data (the server, each cluster
  // master, the master the sentinels name), for commands of one's own such as SCAN.
  // Connects first when needed; the sink keeps ownership.
  [[nodiscard]] virtual std::vector<RedisClient*> masters() = 0;
};

// The sink for a target's settings: a BatchWriter over the router its topology needs,
// with TLS as configured. Never throws: a TLS or password file that cannot be used makes
// connect() throw RedisError(Fatal) instead.
[[nodiscard]] std::unique_ptr<KeySink> make_key_sink(const RedisSettings& settings,
                                                     const std::string& password);

}  // namespace walbust
