#include "run_metrics.h"

#include <array>

#include "walbust/version.h"

namespace walbust {
namespace {

constexpr const char* kChangesHelp = "Row changes read, by table and operation";
constexpr const char* kRenderFailuresHelp = "Keys that could not be rendered and were skipped";
constexpr const char* kEventsHelp = "Invalidation events (PUBLISH, XADD) confirmed by Redis";

// Commit→delete spans sub-millisecond (idle pipeline) to minutes (Redis outage).
std::vector<double> latency_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

}  // namespace

TargetMetrics::TargetMetrics(MetricsRegistry& r, const std::string& target)
    : name(target),
      keys_deleted(r.counter("walbust_keys_deleted_total",
                             "Keys sent to Redis for deletion (patterns expanded)",
                             {{"target", target}})),
      keys_existed(r.counter("walbust_keys_existed_total",
                             "Keys Redis reported as removed: the share of deletes that hit",
                             {{"target", target}})),
      commands(r.counter("walbust_redis_commands_total", "Commands sent to Redis",
                         {{"target", target}})),
      errors(r.counter("walbust_redis_errors_total",
                       "Failed Redis attempts (error replies, timeouts, lost connections)",
                       {{"target", target}})),
      reconnects(r.counter("walbust_reconnects_total",
                           "Connections re-established after an outage (one per outage)",
                           {{"target", "redis:" + target}})),
      batches(r.counter("walbust_redis_batches_total", "Pipelines confirmed by Redis",
                        {{"target", target}})),
      batch_keys(r.histogram("walbust_batch_keys", "Distinct keys per Redis pipeline",
                             {1, 4, 16, 64, 256, 1024, 4096, 16384, 65536}, {{"target", target}})),
      commit_to_delete(r.histogram(
          "walbust_commit_to_delete_seconds",
          "Time from a transaction's commit in PostgreSQL to Redis confirming its deletes",
          latency_buckets(), {{"target", target}})),
      events_channel(r.counter("walbust_events_published_total", kEventsHelp,
                               {{"target", target}, {"kind", "channel"}})),
      events_stream(r.counter("walbust_events_published_total", kEventsHelp,
                              {{"target", target}, {"kind", "stream"}})),
      registry_(r) {}

Gauge& TargetMetrics::subscribers(const std::string& channel) {
  auto& slot = subscribers_[channel];
  if (slot == nullptr) {
    slot =
        &registry_.gauge("walbust_event_subscribers",
                         "Clients that received the last invalidation event PUBLISHed on a channel "
                         "(0: no process listens)",
                         {{"target", name}, {"channel", channel}});
  }
  return *slot;
}

void TargetMetrics::set_master(const std::string& master) {
  std::lock_guard lock(master_mu_);
  if (master == master_) return;  // the common case: one comparison per batch
  if (master_gauge_ != nullptr) master_gauge_->set(0);
  master_ = master;
  master_gauge_ = nullptr;
  if (master.empty()) return;
  master_gauge_ =
      &registry_.gauge("walbust_redis_master", "The master a sentinel target writes to (1: in use)",
                       {{"target", name}, {"master", master}});
  master_gauge_->set(1);
}

RunMetrics::RunMetrics(const std::vector<std::string>& target_names)
    : transactions(registry.counter("walbust_transactions_total",
                                    "Committed transactions read from the slot")),
      commit_to_receive(registry.histogram(
          "walbust_commit_to_receive_seconds",
          "Time from a transaction's commit in PostgreSQL to walbust reading its "
          "Commit message from the slot",
          latency_buckets())),
      pg_reconnects(registry.counter("walbust_reconnects_total",
                                     "Connections re-established after an outage (one per outage)",
                                     {{"target", "postgres"}})),
      reloads_ok(registry.counter("walbust_config_reloads_total", "Configuration reloads (SIGHUP)",
                                  {{"result", "ok"}})),
      reloads_error(registry.counter("walbust_config_reloads_total",
                                     "Configuration reloads (SIGHUP)", {{"result", "error"}})),
      redeletes(
          registry.counter("walbust_redeletes_total", "Second deletes issued by redelete_after")),
      lag_bytes(registry.gauge(
          "walbust_replication_lag_bytes",
          "WAL bytes between the server's current position and the slot's confirmed_flush_lsn "
          "(read from the server)")),
      confirmed_flush_lsn(
          registry.gauge("walbust_confirmed_flush_lsn",
                         "Last LSN acknowledged to PostgreSQL as flushed, as an integer")),
      slot_safe_wal_size(
          registry.gauge("walbust_slot_safe_wal_size_bytes",
                         "WAL that can still be written before the slot is lost "
                         "(pg_replication_slots.safe_wal_size; -1 when unlimited)")) {
  registry.gauge("walbust_build_info", "Build information", {{"version", kVersion}}).set(1);
  registry.declare_counter("walbust_changes_total", kChangesHelp);
  registry.declare_counter("walbust_render_failures_total", kRenderFailuresHelp);
  for (const auto& t : target_names)
    targets.push_back(std::make_unique<TargetMetrics>(registry, t));
}

ReplicaMetrics::ReplicaMetrics(MetricsRegistry& r, const std::string& replica)
    : name(replica),
      replay_lag(
          r.histogram("walbust_replica_replay_lag_seconds",
                      "Time from a transaction's commit to walbust seeing this replica replayed it",
                      latency_buckets(), {{"replica", replica}})),
      timeouts(r.counter(
          "walbust_replica_timeouts_total",
          "Transactions whose deletes were repeated after replicas.max_wait without this replica "
          "having replayed them",
          {{"replica", replica}})),
      reconnects(r.counter("walbust_reconnects_total",
                           "Connections re-established after an outage (one per outage)",
                           {{"target", "replica:" + replica}})) {}

void RunMetrics::add_replicas(const std::vector<std::string>& names) {
  replica_redeletes =
      &registry.counter("walbust_replica_redeletes_total",
                        "Keys and patterns deleted again once every read replica replayed their "
                        "transaction (or max_wait passed)");
  replica_overflows = &registry.counter(
      "walbust_replica_overflows_total",
      "Transactions with too many keys to hold, repeated as their rules' patterns");
  for (const auto& n : names) replicas.push_back(std::make_unique<ReplicaMetrics>(registry, n));
}

Counter& RunMetrics::changes_for(const std::shared_ptr<const Relation>& relation, Op op) {
  auto [it, inserted] = change_counters_.try_emplace(relation);
  auto& slot = it->second[static_cast<std::size_t>(op)];
  if (slot == nullptr) {
    slot = &registry.counter(
        "walbust_changes_total", kChangesHelp,
        {{"table", relation->qualified_name()}, {"op", std::string(op_name(op))}});
  }
  (void)inserted;  // a new entry starts with null slots, filled on first use
  return *slot;
}

Counter& RunMetrics::render_failures(const std::string& rule, const std::string& reason) {
  auto& slot = failure_counters_[{rule, reason}];
  if (slot == nullptr) {
    slot = &registry.counter("walbust_render_failures_total", kRenderFailuresHelp,
                             {{"rule", rule}, {"reason", reason}});
  }
  return *slot;
}

}  // namespace walbust
