// Replicator: the read-replica part. Every delete of a transaction is repeated once each
// replica replayed it plus `grace` (or `max_wait` passed), through the same sinks as the
// first deletes, and the transaction is acknowledged only after that (see README, "Read
// replicas").
#include <spdlog/spdlog.h>

#include "exit_codes.h"
#include "replicator.h"
#include "signals.h"
#include "walbust/core/duration.h"
#include "walbust/io/replica_connection.h"

namespace walbust {
namespace {

// Keys (and patterns) held for repetition across all waiting transactions; at the limit
// the replication stream is not read until some are repeated. One transaction with more
// than half of it is held as its rules' templates as patterns instead.
constexpr std::size_t kReplayTotalKeys = 200000;
constexpr std::size_t kReplayTransactionKeys = kReplayTotalKeys / 2;
constexpr auto kLagUpdateInterval = std::chrono::seconds(1);
constexpr auto kTimeoutWarningInterval = std::chrono::seconds(10);

std::vector<std::string> unique_replica_names(const std::vector<std::string>& dsns) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < dsns.size(); ++i) {
    std::string name = replica_name(dsns[i]);
    if (std::find(names.begin(), names.end(), name) != names.end())
      name += "#" + std::to_string(i + 1);
    names.push_back(std::move(name));
  }
  return names;
}

}  // namespace

int Replicator::start_replicas() {
  const auto& settings = config_.replicas;
  if (settings.dsns.empty()) return -1;
  metrics_.add_replicas(unique_replica_names(settings.dsns));
  for (std::size_t i = 0; i < settings.dsns.size(); ++i) {
    const std::string& name = metrics_.replicas[i]->name;
    const ReplicaFacts facts = inspect_replica(settings.dsns[i], pg_password_);
    if (!facts.reachable) {
      // Not fatal: a replica may be down for maintenance; max_wait bounds what it costs.
      spdlog::warn(
          "replica {}: unreachable at start ({}); retrying in the background, transactions wait "
          "for it "
          "at most {}",
          name, facts.error, format_duration(settings.max_wait));
      continue;
    }
    if (!facts.in_recovery) {
      spdlog::error(
          "replica {} is not in recovery: it is a primary, not a read replica, and can never "
          "confirm a "
          "replay. Fix replicas.dsns (walbust check --db names each replica's state)",
          name);
      return kExitUsage;
    }
    if (!facts.can_read_replay) {
      spdlog::error(
          "replica {}: the role may not call pg_last_wal_replay_lsn() ({}); GRANT EXECUTE ON "
          "FUNCTION "
          "pg_catalog.pg_last_wal_replay_lsn() TO the role, on the primary",
          name, facts.error.empty() ? "permission denied" : facts.error);
      return kExitUsage;
    }
    spdlog::info("replica {}: standby, replayed up to {}", name,
                 facts.replay_lsn ? format_lsn(*facts.replay_lsn) : std::string("nothing yet"));
  }
  replay_ = std::make_unique<ReplayQueue>(
      ReplayQueue::Settings{settings.dsns.size(), settings.grace, settings.max_wait,
                            kReplayTransactionKeys, kReplayTotalKeys});
  replica_poller_ = std::make_unique<ReplicaPoller>(settings, pg_password_, metrics_);
  loop_.add(*replica_poller_);
  spdlog::info(
      "read replicas: {}; every delete is repeated {} after all of them replayed its commit, or {} "
      "after "
      "the commit at the latest",
      settings.dsns.size(), format_duration(settings.grace), format_duration(settings.max_wait));
  return -1;
}

void Replicator::hold_for_replay(AckTracker::Ticket ticket, const TransactionCommit& commit) {
  const std::uint64_t overflows = replay_->overflows();
  replay_->commit(ticket, commit.end_lsn, commit.commit_time_us, Clock::now(), *rules_);
  if (replay_->overflows() != overflows) {
    metrics_.replica_overflows->inc();
    spdlog::warn(
        "transaction ending at {} has more than {} keys to repeat after replay; its rules' "
        "templates are repeated as patterns instead (SCAN)",
        format_lsn(commit.end_lsn), kReplayTransactionKeys);
  }
  replica_poller_->want(replay_->wanted());
}

void Replicator::release_replayed() {
  const auto now = Clock::now();
  const bool news = take_replica_reports();
  if (news || now >= next_lag_update_) update_replica_lag(now);
  if (replay_->next_due() > now) return;
  if (queue_released_repeats(now)) replica_poller_->want(replay_->wanted());
}

bool Replicator::take_replica_reports() {
  bool news = false;
  for (std::size_t i = 0; i < metrics_.replicas.size(); ++i) {
    const auto report = replica_poller_->take(i);
    if (!report) continue;
    news = true;
    replayed_scratch_.clear();
    replay_->observe(i, report->lsn, report->at, replayed_scratch_);
    for (const std::int64_t commit_us : replayed_scratch_) {
      metrics_.replicas[i]->replay_lag.observe(
          static_cast<double>(std::max<std::int64_t>(0, report->at_us - commit_us)) / 1e6);
    }
  }
  return news;
}

void Replicator::update_replica_lag(Clock::time_point now) {
  next_lag_update_ = now + kLagUpdateInterval;
  const std::int64_t now_us = pg_epoch_now_us();
  for (std::size_t i = 0; i < metrics_.replicas.size(); ++i) {
    const std::int64_t oldest = replay_->oldest_unreplayed_us(i);
    metrics_.replicas[i]->lag_seconds.store(
        oldest == 0 ? 0.0 : static_cast<double>(now_us - oldest) / 1e6);
  }
}

void Replicator::warn_replay_timeout(const ReplayQueue::Released& r, Clock::time_point now) {
  for (const std::size_t i : r.timed_out) metrics_.replicas[i]->timeouts.inc();
  if (r.timed_out.empty() || now < next_timeout_warning_) return;
  next_timeout_warning_ = now + kTimeoutWarningInterval;
  spdlog::warn(
      "replica {}: has not replayed {} after {}; its deletes are repeated anyway (counted in "
      "walbust_replica_timeouts_total, further ones are not logged for {})",
      metrics_.replicas[r.timed_out.front()]->name, format_lsn(r.end_lsn),
      format_duration(config_.replicas.max_wait), format_duration(kTimeoutWarningInterval));
}

bool Replicator::queue_released_repeats(Clock::time_point now) {
  AckTracker::Ticket last = 0;
  Lsn last_lsn = kInvalidLsn;
  while (replay_->pop(now, released_scratch_)) {
    auto& r = released_scratch_;
    warn_replay_timeout(r, now);
    metrics_.replica_redeletes->inc(static_cast<double>(r.actions.size()));
    for (auto& a : r.actions) {
      std::uint64_t mask = a.targets;
      for (std::size_t t = 0; mask != 0; ++t, mask >>= 1) {
        if ((mask & 1U) == 0) continue;
        QueueItem item;
        item.action.kind = a.kind;
        item.action.key = mask == 1U ? std::move(a.key) : a.key;
        item.after_replay = true;
        local_[t].push_back(std::move(item));
      }
    }
    last = r.ticket;
    last_lsn = r.end_lsn;
  }
  if (last == 0) return false;
  // One marker per target covers every transaction released here: confirmations only grow.
  for (auto& local : local_) {
    QueueItem marker;
    marker.kind = QueueItem::Kind::Commit;
    marker.ticket = last;
    marker.end_lsn = last_lsn;
    marker.after_replay = true;
    local.push_back(std::move(marker));
  }
  return true;
}

ReplicaPoller::Clock::time_point Replicator::replay_deadline() const {
  if (!replay_) return Clock::time_point::max();
  return std::max(replay_->next_due(), Clock::now());
}

void Replicator::wait_for_replicas(Clock::time_point until) {
  until = std::min({until, schedule_.next_status(), next_progress_, next_watchdog_});
  (void)loop_.run_once(std::min(until, Clock::now() + std::chrono::seconds(1)));
}

void Replicator::wait_for_replay_room() {
  if (Clock::now() >= next_full_warning_) {
    next_full_warning_ = Clock::now() + kTimeoutWarningInterval;
    spdlog::warn(
        "read replicas: {} keys wait for replay, the limit; not reading from PostgreSQL until "
        "replicas catch up or max_wait ({}) passes",
        replay_->held_keys(), format_duration(config_.replicas.max_wait));
  }
  while (replay_->full() && !stopping()) {
    if (!flush_local()) return;
    tick();
    release_replayed();
    if (!replay_->full()) break;
    wait_for_replicas(replay_deadline());
    // The socket was not read meanwhile: silence says nothing about the server.
    schedule_.forgive_silence(Clock::now());
  }
}

void Replicator::drain_replayed() {
  if (!replay_) return;
  while (!Signals::stop_requested()) {
    tick();
    release_replayed();
    if (!flush_local() || replay_->empty()) break;
    wait_for_replicas(replay_deadline());
  }
}

std::string Replicator::replica_health() const {
  std::string out;
  for (const auto& r : metrics_.replicas) {
    std::string state;
    switch (r->status.load()) {
      case ReplicaMetrics::Status::Connecting:
        state = "connecting";
        break;
      case ReplicaMetrics::Status::Up:
        state = "up";
        break;
      case ReplicaMetrics::Status::Unreachable:
        state = "unreachable, transactions wait for it up to max_wait";
        break;
      case ReplicaMetrics::Status::NotStandby:
        state = "not in recovery (promoted?), transactions wait up to max_wait";
        break;
    }
    out += fmt::format("\nreplica {}: {}, replayed {}, lag {:.3f}s", r->name, state,
                       format_lsn(r->replay_lsn.load()), r->lag_seconds.load());
  }
  return out;
}

std::string Replicator::replica_status() const {
  const ReplicaMetrics* worst = nullptr;
  for (const auto& r : metrics_.replicas) {
    if (worst == nullptr || r->lag_seconds.load() > worst->lag_seconds.load()) worst = r.get();
  }
  if (worst == nullptr) return {};
  return fmt::format("; replica lag {:.1f}s ({})", worst->lag_seconds.load(), worst->name);
}

}  // namespace walbust
