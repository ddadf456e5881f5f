#include "replicator.h"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <thread>

#include "exit_codes.h"
#include "signals.h"
#include "walbust/backoff.h"
#include "walbust/redis_client.h"
#include "walbust/redis_sink.h"

namespace walbust {
namespace {

// Items gathered before they are handed to the queue in one lock round trip.
constexpr std::size_t kLocalChunk = 512;
// How long a SIGTERM waits for in-flight deletes before giving up on them.
constexpr auto kShutdownGrace = std::chrono::seconds(8);
// With --endpos and nothing to read, how often to ask the server where it is.
constexpr auto kEndposProbe = std::chrono::milliseconds(200);
constexpr auto kProgressInterval = std::chrono::seconds(10);

std::size_t queue_capacity(const BatchSettings& batch) {
  // Two batches: one in flight, one forming. Bounded, so memory does not follow backlog.
  return std::max<std::size_t>(2 * batch.max_keys, 4096);
}

class GapError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace

Replicator::Replicator(Config config, RuleSet rules, std::optional<Lsn> endpos)
    : config_(std::move(config)),
      rules_(std::make_shared<const RuleSet>(std::move(rules))),
      endpos_(endpos),
      pg_password_(read_password_file(config_.postgres.password_file)),
      tracker_(config_.targets.size()),
      queue_(queue_capacity(config_.batch)),
      conn_(config_.postgres.dsn, pg_password_),
      state_(config_.state_dir, config_.postgres.slot) {
  for (std::size_t i = 0; i < config_.targets.size(); ++i) {
    const auto& t = config_.targets[i];
    sinks_.push_back(std::make_unique<SinkWorker>(i, t, read_password_file(t.settings.password_file), config_.batch,
                                                  queue_, tracker_, stats_));
  }
}

Replicator::~Replicator() = default;

bool Replicator::stopping() const { return Signals::stop_requested() || endpos_reached_; }

void Replicator::sleep_interruptibly(std::chrono::milliseconds delay) {
  pollfd pfd{Signals::wake_fd(), POLLIN, 0};
  (void)::poll(&pfd, pfd.fd >= 0 ? 1 : 0, static_cast<int>(delay.count()));
}

int Replicator::run() {
  spdlog::info("walbust starting: slot {}, publication {}, {} rules, {} Redis target(s), state {}",
               config_.postgres.slot, config_.postgres.publication, rules_->size(), config_.targets.size(),
               state_.path());
  for (auto& sink : sinks_) sink->start();

  Backoff backoff(std::chrono::milliseconds(500), std::chrono::seconds(30));
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.0, 1.0);
  bool outage = false;
  while (!stopping()) {
    try {
      const int code = open_stream();
      if (code >= 0) {
        exit_code_ = code;
        break;
      }
      if (outage) spdlog::info("postgres: streaming again from slot {}", config_.postgres.slot);
      outage = false;
      backoff.reset();
      stream_loop();
      if (stopping()) break;
      throw PgError("", "the server ended the replication stream");
    } catch (const PgError& e) {
      if (stopping()) break;
      stats_.streaming.store(false);
      tracker_.abandon_transaction();
      stream_.reset();
      skip_transaction_ = false;
      // Actions of a half-read transaction may sit in local_: deleting them is harmless
      // and the transaction is resent after reconnecting, so they are simply handed on.
      if (!flush_local()) break;
      conn_.close();
      stats_.pg_reconnects.fetch_add(1);
      if (e.sqlstate() == "55006") {
        spdlog::info("postgres: slot {} is in use by another consumer; waiting to take over (standby)",
                     config_.postgres.slot);
      } else if (!outage) {
        spdlog::warn("postgres: {}; reconnecting with backoff", e.what());
      } else {
        spdlog::debug("postgres: {}", e.what());
      }
      outage = true;
      auto delay = backoff.next(jitter(rng));
      if (e.sqlstate() == "55006") delay = std::min(delay, config_.postgres.status_interval);
      sleep_interruptibly(delay);
    } catch (const StreamError& e) {
      spdlog::error("cannot interpret the replication stream: {}; nothing after the last acknowledged "
                    "position ({}) was acknowledged, so no invalidation is lost; stopping",
                    e.what(), format_lsn(tracker_.flush_lsn()));
      exit_code_ = kExitFailure;
      break;
    }
  }
  shutdown(endpos_reached_ && exit_code_ == 0);
  for (auto& sink : sinks_) {
    if (sink->failed()) exit_code_ = kExitFailure;
  }
  return exit_code_;
}

int Replicator::open_stream() {
  conn_.connect();
  const SystemIdentity id = conn_.identify_system();
  system_id_ = id.system_id;
  database_ = id.dbname;
  const auto saved = state_.load();
  if (saved && saved->system_identifier != id.system_id) {
    spdlog::error("state file {} belongs to database system {}, but this server is {}: refusing to stream "
                  "(wrong server, or a restored/recreated cluster whose changes walbust never saw). "
                  "If caches were flushed, remove {} and start again",
                  state_.path(), saved->system_identifier, id.system_id, state_.path());
    return kExitFailure;
  }
  const std::string& slot_name = config_.postgres.slot;
  auto slot = conn_.slot_info(slot_name);
  if (slot && slot->wal_status == "lost") {
    return handle_gap("replication slot " + slot_name +
                      " was invalidated by PostgreSQL (wal_status = lost, max_slot_wal_keep_size exceeded)");
  }
  if (slot && (slot->slot_type != "logical" || slot->plugin != "pgoutput")) {
    spdlog::error("replication slot {} uses plugin '{}' ({}), walbust needs a logical pgoutput slot; "
                  "choose another postgres.slot", slot_name, slot->plugin, slot->slot_type);
    return kExitUsage;
  }
  if (slot && !id.dbname.empty() && slot->database != id.dbname) {
    spdlog::error("replication slot {} belongs to database {}, but postgres.dsn connects to {}", slot_name,
                  slot->database, id.dbname);
    return kExitUsage;
  }
  if (!conn_.publication_exists(config_.postgres.publication)) {
    spdlog::error("publication {} does not exist in database {}; create it (walbust setup prints the SQL)",
                  config_.postgres.publication, id.dbname);
    return kExitFailure;
  }
  Lsn start = kInvalidLsn;
  if (!slot) {
    if (saved && saved->slot == slot_name) {
      return handle_gap("replication slot " + slot_name + " is missing although walbust streamed from it up to " +
                        format_lsn(saved->acknowledged_lsn));
    }
    if (!config_.postgres.create_slot) {
      spdlog::error("replication slot {} does not exist and postgres.create_slot is false; create it with: "
                    "SELECT pg_create_logical_replication_slot('{}', 'pgoutput');",
                    slot_name, slot_name);
      return kExitGap;
    }
    start = conn_.create_slot(slot_name, false);
    spdlog::info("created replication slot {} at {}", slot_name, format_lsn(start));
  } else {
    start = slot->confirmed_flush_lsn;
  }
  conn_.start_replication(slot_name, config_.postgres.publication, kInvalidLsn);
  tracker_.start_from(start);
  stats_.streaming.store(true);
  save_state();
  spdlog::info("streaming from slot {} at {} (publication {}, {} rules)", slot_name, format_lsn(tracker_.flush_lsn()),
               config_.postgres.publication, rules_->size());
  return -1;
}

int Replicator::handle_gap(const std::string& what) {
  const std::string& slot = config_.postgres.slot;
  if (config_.on_gap == "fail") {
    spdlog::error("replication gap: {}. Changes were missed and caches may be stale. walbust never recreates "
                  "the slot silently. To recover: flush the affected caches (or set on_gap: flush_rules / "
                  "flushdb), then drop the slot if it still exists (SELECT pg_drop_replication_slot('{}');) "
                  "and remove {}; the next start creates a new slot",
                  what, slot, state_.path());
    return kExitGap;
  }
  spdlog::warn("replication gap: {}; on_gap is {}: recreating the slot, then flushing", what, config_.on_gap);
  if (conn_.slot_info(slot)) {
    (void)conn_.query_value("SELECT pg_drop_replication_slot(" + conn_.quote_literal(slot) + ")::text");
  }
  // The new slot exists before the flush, so every change after the flush is streamed.
  const Lsn start = conn_.create_slot(slot, false);
  for (const auto& target : config_.targets) {
    RedisClient client(target.settings.endpoint, read_password_file(target.settings.password_file),
                       target.settings.timeout);
    try {
      client.connect();
      if (config_.on_gap == "flushdb") {
        client.command({"FLUSHDB"});
        spdlog::warn("redis {}: FLUSHDB done after the gap", target.settings.endpoint.describe());
      } else {
        RedisSink sink(client, target.settings.delete_command);
        const auto patterns = rules_->all_keys_as_patterns();
        std::vector<const Action*> ptrs;
        for (const auto& a : patterns) ptrs.push_back(&a);
        const BatchResult r = sink.apply(ptrs);
        spdlog::warn("redis {}: deleted {} keys matching {} rule templates after the gap",
                     target.settings.endpoint.describe(), r.existed, patterns.size());
      }
    } catch (const RedisError& e) {
      // The slot was recreated but the flush did not happen: refuse to stream, next start
      // sees no gap, so say loudly what must be done by hand.
      spdlog::error("redis {}: flushing after the gap failed: {}. Flush the caches by hand before trusting them",
                    target.settings.endpoint.describe(), e.what());
      return kExitGap;
    }
  }
  tracker_.start_from(start);
  conn_.start_replication(slot, config_.postgres.publication, kInvalidLsn);
  stats_.streaming.store(true);
  save_state();
  return -1;
}

void Replicator::stream_loop() {
  next_status_ = Clock::now() + config_.postgres.status_interval;
  next_progress_ = Clock::now() + kProgressInterval;
  last_progress_ = Snapshot{stats_.changes.load(), stats_.keys_deleted.load(), stats_.transactions.load(), Clock::now()};
  while (!stopping()) {
    const auto now = Clock::now();
    if (now >= next_status_) send_status();
    maybe_log_progress(now);
    maybe_reload();
    const ReplicationFrame frame = conn_.try_read();
    switch (frame.kind) {
      case ReplicationFrame::Kind::XLogData:
        stream_.feed(frame.payload, frame.data_start, *this);
        break;
      case ReplicationFrame::Kind::Keepalive:
        stats_.server_wal_end.store(std::max(stats_.server_wal_end.load(), frame.wal_end));
        if (!stream_.in_transaction()) {
          // Everything before walEnd was read; once it is all confirmed, walEnd is safe.
          if (!flush_local()) return;
          tracker_.keepalive(frame.wal_end);
          if (endpos_ && frame.wal_end >= *endpos_) endpos_reached_ = true;
        }
        if (frame.reply_requested) send_status();
        break;
      case ReplicationFrame::Kind::End:
        throw PgError("", "the server ended the replication stream");
      case ReplicationFrame::Kind::None: {
        // Nothing buffered: hand over what was gathered before blocking, so batching
        // never adds latency.
        if (!flush_local()) return;
        auto deadline = std::min(next_status_, next_progress_);
        if (endpos_ && tracker_.idle()) {
          if (now - last_reply_request_ >= kEndposProbe) {
            send_status(true);
            last_reply_request_ = now;
          }
          deadline = std::min(deadline, now + kEndposProbe);
        }
        conn_.wait_readable(deadline, Signals::wake_fd());
        Signals::drain_wake_fd();
        break;
      }
    }
  }
}

void Replicator::on_begin(const TransactionBegin& begin) {
  if (endpos_ && begin.final_lsn > *endpos_) {
    // Like pg_recvlogical --endpos: a transaction committing after endpos is not read.
    endpos_reached_ = true;
    skip_transaction_ = true;
    return;
  }
  skip_transaction_ = false;
  tracker_.begin();
}

void Replicator::on_change(const Change& change) {
  if (skip_transaction_) return;
  stats_.changes.fetch_add(1, std::memory_order_relaxed);
  actions_.clear();
  failures_.clear();
  rules_->plan(change, actions_, &failures_);
  for (auto& action : actions_) {
    QueueItem item;
    item.kind = QueueItem::Kind::Action;
    item.action = std::move(action);
    local_.push_back(std::move(item));
  }
  stats_.actions.fetch_add(actions_.size(), std::memory_order_relaxed);
  if (spdlog::should_log(spdlog::level::trace)) {
    spdlog::trace("{} {} at {} (xid {}): {} actions", op_name(change.op), change.relation->qualified_name(),
                  format_lsn(change.lsn), change.xid, actions_.size());
  }
  for (const auto& f : failures_) {
    stats_.render_failures.fetch_add(1, std::memory_order_relaxed);
    if (warned_failures_.emplace(f.rule, f.reason).second) {
      spdlog::warn("rule {}: a key could not be rendered for {} at {} ({}{}); such keys are skipped, "
                   "further occurrences are only counted",
                   rules_->rule(f.rule).name, change.relation->qualified_name(), format_lsn(change.lsn), f.reason,
                   f.column.empty() ? "" : ", column " + f.column);
    }
  }
  // Large transactions stream through: their deletes go out while the rest is read.
  if (local_.size() >= kLocalChunk && !flush_local()) Signals::request_stop();
}

void Replicator::on_commit(const TransactionCommit& commit) {
  if (skip_transaction_) return;
  QueueItem item;
  item.kind = QueueItem::Kind::Commit;
  item.ticket = tracker_.commit(commit.end_lsn);
  item.end_lsn = commit.end_lsn;
  item.commit_time_us = commit.commit_time_us;
  local_.push_back(std::move(item));
  stats_.transactions.fetch_add(1, std::memory_order_relaxed);
  if (endpos_ && commit.end_lsn >= *endpos_) endpos_reached_ = true;
}

bool Replicator::flush_local() {
  while (!local_.empty()) {
    const auto deadline = std::min(next_status_, Clock::now() + std::chrono::seconds(1));
    if (queue_.push(local_, deadline)) break;
    // The queue is full (Redis slow or down). Keep the walsender from timing us out.
    if (Clock::now() >= next_status_ && conn_.connected()) send_status();
    if (Signals::stop_requested()) return false;
    for (const auto& sink : sinks_) {
      if (sink->failed()) return false;
    }
  }
  return true;
}

void Replicator::send_status(bool reply_requested) {
  const Lsn flush = tracker_.flush_lsn();
  conn_.send_status(flush, reply_requested);
  next_status_ = Clock::now() + config_.postgres.status_interval;
  if (flush != last_saved_lsn_) save_state();
}

void Replicator::save_state() {
  const Lsn flush = tracker_.flush_lsn();
  try {
    state_.save(SlotState{system_id_, database_, config_.postgres.slot, flush});
    last_saved_lsn_ = flush;
  } catch (const std::exception& e) {
    // Losing the state file only weakens gap detection; it must not stop invalidation.
    spdlog::warn("{}", e.what());
  }
}

void Replicator::maybe_log_progress(Clock::time_point now) {
  if (now < next_progress_) return;
  next_progress_ = now + kProgressInterval;
  const Snapshot cur{stats_.changes.load(), stats_.keys_deleted.load(), stats_.transactions.load(), now};
  if (cur.changes == last_progress_.changes && cur.transactions == last_progress_.transactions) {
    last_progress_ = cur;
    return;
  }
  const double secs = std::chrono::duration<double>(now - last_progress_.at).count();
  const Lsn flush = tracker_.flush_lsn();
  const Lsn server = stats_.server_wal_end.load();
  spdlog::info("progress: {:.0f} changes/s, {:.0f} keys/s, {} transactions, acknowledged {}, lag {} bytes, queue {}",
               (cur.changes - last_progress_.changes) / secs, (cur.keys - last_progress_.keys) / secs,
               cur.transactions - last_progress_.transactions, format_lsn(flush), server > flush ? server - flush : 0,
               queue_.size());
  last_progress_ = cur;
}

void Replicator::maybe_reload() {
  if (!Signals::take_reload()) return;
  Diagnostics diags;
  auto config = load_config(config_.path, diags);
  if (config) {
    RuleSet rules = load_rules(*config, diags);
    if (diags.empty()) {
      rules_ = std::make_shared<const RuleSet>(std::move(rules));
      spdlog::info("reloaded {}: {} rules", config_.path, rules_->size());
      return;
    }
  }
  for (const auto& d : diags.items()) spdlog::error("reload: {}", d.format());
  spdlog::error("reload failed; the previous rules stay in effect");
}

void Replicator::shutdown(bool drain_fully) {
  const int sig = Signals::stop_signal();
  if (sig != 0) spdlog::info("received signal {}: finishing in-flight deletes, then acknowledging", sig);
  // Hand over what was read; without a stream connection this may be partial work of an
  // unacknowledged transaction, which is harmless.
  (void)queue_.push(local_, Clock::now() + std::chrono::seconds(1));
  local_.clear();
  queue_.close();  // sinks drain what is queued, then exit
  if (!drain_fully) {
    const auto deadline = Clock::now() + kShutdownGrace;
    auto all_finished = [this] {
      return std::all_of(sinks_.begin(), sinks_.end(), [](const auto& s) { return s->finished(); });
    };
    while (Clock::now() < deadline && !all_finished()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!all_finished()) {
      // Past the grace period the rest is dropped unacknowledged: PostgreSQL resends it.
      spdlog::warn("shutdown: Redis did not confirm {} queued actions in time; they stay unacknowledged",
                   queue_.size());
    }
    for (auto& sink : sinks_) sink->abandon();
  }
  for (auto& sink : sinks_) sink->join();
  if (conn_.connected()) {
    try {
      send_status();
      conn_.finish_stream();
    } catch (const PgError& e) {
      spdlog::warn("postgres: final acknowledgement not sent: {}", e.what());
    }
  }
  save_state();
  spdlog::info("stopped; acknowledged up to {}", format_lsn(tracker_.flush_lsn()));
}

}  // namespace walbust
