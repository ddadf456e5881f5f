#pragma once
// Everything `walbust run` measures: the Prometheus series of README "Running as a service"
// (resolved once, so hot paths only touch atomics) and the liveness facts the health check, STATUS=
// and the watchdog are derived from.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "walbust/core/change.h"
#include "walbust/core/lsn.h"
#include "walbust/core/metrics.h"

namespace walbust {

// Monotonic "last seen alive" stamp of the stream or a Redis target, for the watchdog.
class Heartbeat {
 public:
  void beat() {
    at_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
              std::memory_order_relaxed);
  }
  [[nodiscard]] std::chrono::steady_clock::duration age() const {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    return std::chrono::steady_clock::duration(now - at_.load(std::memory_order_relaxed));
  }

 private:
  std::atomic<std::chrono::steady_clock::rep> at_{
      std::chrono::steady_clock::now().time_since_epoch().count()};
};

struct TargetMetrics {
  TargetMetrics(MetricsRegistry& registry, const std::string& target);

  std::string name;
  Counter& keys_deleted;
  Counter& keys_existed;
  Counter& commands;
  Counter& errors;
  Counter& reconnects;
  Counter& batches;
  Histogram& batch_keys;
  Histogram& commit_to_delete;
  Counter& events_channel;  // walbust_events_published_total{kind="channel"}
  Counter& events_stream;   // walbust_events_published_total{kind="stream"}
  // walbust_event_subscribers{channel}: what the last PUBLISH there returned. The
  // target's SinkWorker only.
  Gauge& subscribers(const std::string& channel);
  std::atomic<bool> up{false};
  Heartbeat heartbeat;

  // The master in use ("host:port") of a sentinel target, for /healthz and
  // walbust_redis_master{target,master} (1 for the one in use, 0 for earlier ones).
  void set_master(const std::string& master);
  [[nodiscard]] std::string master() const {
    std::lock_guard lock(master_mu_);
    return master_;
  }

 private:
  MetricsRegistry& registry_;
  std::map<std::string, Gauge*> subscribers_;
  mutable std::mutex master_mu_;
  std::string master_;
  Gauge* master_gauge_ = nullptr;
};

// One read replica (the `replicas:` section), labelled host:port.
struct ReplicaMetrics {
  enum class Status : int { Connecting, Up, Unreachable, NotStandby };
  ReplicaMetrics(MetricsRegistry& registry, const std::string& replica);

  std::string name;
  Histogram& replay_lag;  // commit → this replica replayed it
  Counter& timeouts;      // transactions repeated after max_wait without this replica
  Counter& reconnects;
  std::atomic<Status> status{Status::Connecting};
  std::atomic<double> lag_seconds{0};  // age of the oldest commit it has not replayed
  std::atomic<Lsn> replay_lsn{0};
};

class RunMetrics {
 public:
  explicit RunMetrics(const std::vector<std::string>& targets);

  MetricsRegistry registry;
  Counter& transactions;
  // Commit timestamp → its Commit message read from the slot: PostgreSQL's share of the
  // commit→delete latency (walsender decoding and the network), walbust's is the rest.
  Histogram& commit_to_receive;
  Counter& pg_reconnects;
  Counter& reloads_ok;
  Counter& reloads_error;
  Counter& redeletes;
  Gauge& lag_bytes;
  Gauge& confirmed_flush_lsn;
  Gauge& slot_safe_wal_size;
  std::vector<std::unique_ptr<TargetMetrics>> targets;
  // Empty without replicas; then replica_redeletes is null.
  std::vector<std::unique_ptr<ReplicaMetrics>> replicas;
  Counter* replica_redeletes = nullptr;
  Counter* replica_overflows = nullptr;
  void add_replicas(const std::vector<std::string>& names);

  std::atomic<std::uint64_t> changes{0};  // all tables, for progress lines
  std::atomic<Lsn> server_wal_end{0};
  std::atomic<bool> streaming{false};
  std::atomic<bool> standby{false};  // waiting for the slot held by another consumer
  Heartbeat source_heartbeat;

  // Source thread only: the per-table/op series, cached by relation identity.
  Counter& changes_for(const std::shared_ptr<const Relation>& relation, Op op);
  Counter& render_failures(const std::string& rule, const std::string& reason);

 private:
  // Keyed by the shared pointer itself, which keeps the relation alive: a replaced
  // relation's address can never be reused for another table.
  std::unordered_map<std::shared_ptr<const Relation>, std::array<Counter*, 4>> change_counters_;
  std::map<std::pair<std::string, std::string>, Counter*> failure_counters_;
};

}  // namespace walbust
