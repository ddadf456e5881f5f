#include "replicator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <random>

#include "exit_codes.h"
#include "signals.h"
#include "walbust/core/backoff.h"
#include "walbust/core/duration.h"
#include "walbust/core/reload_plan.h"
#include "walbust/io/key_sink.h"
#include "walbust/io/redis_client.h"
#include "walbust/version.h"

namespace walbust {
namespace {

// Items gathered before they are handed to the targets in one go.
constexpr std::size_t kLocalChunk = 512;
// How long a SIGTERM waits for in-flight deletes before giving up on them.
constexpr auto kShutdownGrace = std::chrono::seconds(8);
constexpr auto kProgressInterval = std::chrono::seconds(10);
// While the stream is busy, how often the loop's other sources get a round: replica
// answers wait at most this long, for one extra poll() per interval.
constexpr auto kBusyRoundInterval = std::chrono::milliseconds(2);

// A target whose heartbeat is older than this is stalled: the watchdog stops pinging so
// systemd restarts the service. Generous: Redis timeouts and backoff sleeps are shorter.
constexpr auto kStallLimit = std::chrono::seconds(30);

std::vector<std::string> target_names(const Config& config) {
  std::vector<std::string> names;
  for (const auto& t : config.targets) names.push_back(t.name);
  return names;
}

}  // namespace

Replicator::Replicator(Config config, RuleSet rules, std::optional<Lsn> endpos)
    : config_(std::move(config)),
      rules_(std::make_shared<const RuleSet>(std::move(rules))),
      endpos_(endpos),
      pg_password_(read_password_file(config_.postgres.password_file)),
      metrics_(target_names(config_)),
      tracker_(config_.targets.size(), /*after_replay=*/!config_.replicas.dsns.empty()),
      rule_targets_(rule_target_masks(*rules_, config_.targets)),
      conn_(config_.postgres.dsn, pg_password_),
      state_(config_.state_dir, config_.postgres.slot),
      state_writer_(state_),
      loop_(Signals::wake_fd()),
      local_(config_.targets.size()) {
  binder_ = std::make_unique<TableBinder>(config_.postgres.dsn, pg_password_,
                                          config_.postgres.publication, rules_, &metrics_.registry);
  for (std::size_t i = 0; i < config_.targets.size(); ++i) {
    const auto& t = config_.targets[i];
    sinks_.push_back(std::make_unique<SinkWorker>(
        i, t, read_password_file(t.settings.password_file), config_.batch, tracker_,
        *metrics_.targets[i], metrics_.redeletes));
  }
}

std::size_t Replicator::queued() const {
  std::size_t n = 0;
  for (const auto& sink : sinks_) n += sink->queued();
  return n;
}

std::size_t Replicator::local_size() const {
  std::size_t n = 0;
  for (const auto& l : local_) n = std::max(n, l.size());
  return n;
}

Replicator::~Replicator() = default;

bool Replicator::stopping() const { return Signals::stop_requested() || endpos_reached_; }

bool Replicator::sinks_alive() const {
  for (std::size_t i = 0; i < sinks_.size(); ++i) {
    if (sinks_[i]->finished() || metrics_.targets[i]->heartbeat.age() > kStallLimit) return false;
  }
  return true;
}

std::pair<bool, std::string> Replicator::health() const {
  // First line: the verdict (kept short for probes); then one line per Redis target, so
  // an operator sees which target holds acknowledgement back.
  bool healthy = true;
  std::string body;
  if (metrics_.standby.load()) {
    healthy = false;
    body = "standby: slot " + config_.postgres.slot + " is held by another consumer";
  } else if (!metrics_.streaming.load()) {
    healthy = false;
    body = "not streaming from PostgreSQL";
  }
  std::string targets;
  for (std::size_t i = 0; i < metrics_.targets.size(); ++i) {
    const auto& t = *metrics_.targets[i];
    const auto& s = config_.targets[i].settings;
    std::string where = s.cluster                   ? "cluster"
                        : s.sentinel.master.empty() ? s.endpoint.describe()
                                                    : "sentinel " + s.sentinel.master;
    for (std::size_t n = 0; n < s.nodes.size(); ++n) where += (n == 0 ? " " : ",") + s.nodes[n];
    if (const std::string master = t.master(); !master.empty()) where += ", master " + master;
    const bool up = t.up.load();
    if (!up && healthy) {
      healthy = false;
      body = "redis target " + t.name + " unreachable";
    }
    targets += "\ntarget " + t.name + " (" + where +
               "): " + (up ? "up" : "unreachable, nothing acknowledged until it is back") + ", " +
               std::to_string(sinks_[i]->queued()) + " actions queued";
  }
  if (healthy) body = "streaming";
  // A rule that cannot match leaves its keys stale: as unhealthy as a stopped stream.
  const auto unbound = binder_->unbound_lines();
  if (!unbound.empty() && healthy) {
    healthy = false;
    body = std::to_string(unbound.size()) +
           (unbound.size() == 1 ? " rule cannot" : " rules cannot") +
           " match; the others keep invalidating";
  }
  for (const auto& line : unbound) targets += "\n" + line;
  return {healthy, body + targets + replica_health()};
}

void Replicator::sleep_interruptibly(std::chrono::milliseconds delay) {
  const auto until = Clock::now() + delay;
  while (!Signals::stop_requested()) {
    tick();
    // PostgreSQL being away does not delay the repeats of what was already read.
    if (replay_) {
      release_replayed();
      (void)flush_local();
    }
    const auto now = Clock::now();
    if (now >= until) return;
    (void)loop_.run_once(std::min({until, next_progress_, next_watchdog_, replay_deadline()}));
    maybe_reload();
  }
}

// Reconnection state of one run.
struct Replicator::Reconnect {
  Backoff backoff{std::chrono::milliseconds(500), std::chrono::seconds(30)};
  std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> jitter{0.0, 1.0};
  bool outage = false;   // connection lost (or standing by) since the last successful start
  bool standby = false;  // the last failure was the slot held by another consumer
};

int Replicator::run() {
  spdlog::info(
      "walbust {} starting: slot {}, publication {}, {} rules, {} Redis target(s), state {}",
      kVersion, config_.postgres.slot, config_.postgres.publication, rules_->size(),
      config_.targets.size(), state_.path());
  if (const int code = start_replicas(); code >= 0) return code;
  start_workers();
  stream_with_reconnects();
  if (endpos_reached_ && exit_code_ == 0) drain_replayed();
  shutdown(endpos_reached_ && exit_code_ == 0);
  for (auto& sink : sinks_) {
    if (sink->failed()) exit_code_ = kExitFailure;
  }
  return exit_code_;
}

void Replicator::start_workers() {
  if (!config_.metrics_listen.empty()) {
    metrics_server_ = std::make_unique<MetricsServer>(config_.metrics_listen, metrics_.registry,
                                                      [this] { return health(); });
    metrics_server_->start();
    spdlog::info("metrics on http://{}/metrics", config_.metrics_listen);
  }
  slot_poller_ =
      std::make_unique<SlotPoller>(config_.postgres.dsn, pg_password_, config_.postgres.slot,
                                   std::min(config_.postgres.status_interval,
                                            std::chrono::milliseconds(std::chrono::seconds(10))),
                                   metrics_);
  loop_.add(*slot_poller_);
  // Rules are bound before the first change: a rule that cannot match is reported at start.
  (void)binder_->refresh();
  if (const auto wd = notifier_.watchdog_interval()) {
    next_watchdog_ = Clock::now();
    spdlog::info(
        "systemd watchdog: pinging every {} ms while the stream and every target make progress",
        std::chrono::duration_cast<std::chrono::milliseconds>(*wd).count());
  } else {
    next_watchdog_ = Clock::time_point::max();
  }
  next_progress_ = Clock::now() + kProgressInterval;
  last_progress_ = Snapshot{0, 0, 0, Clock::now()};
  for (auto& sink : sinks_) {
    loop_.add(*sink);
    sink->start();
  }
}

void Replicator::stream_with_reconnects() {
  Reconnect reconnect;
  while (!stopping()) {
    try {
      status_text_ = "connecting to PostgreSQL";
      const int code = open_stream();
      if (code >= 0) {
        exit_code_ = code;
        return;
      }
      report_streaming_again(reconnect);
      stream_loop();
      if (stopping()) return;
      throw PgError("", "the server ended the replication stream");
    } catch (const PgError& e) {
      if (stopping() || !recover_from(e, reconnect)) return;
    } catch (const StreamError& e) {
      spdlog::error(
          "cannot interpret the replication stream: {}; nothing after the last acknowledged "
          "position ({}) was acknowledged, so no invalidation is lost; stopping",
          e.what(), format_lsn(tracker_.flush_lsn()));
      exit_code_ = kExitFailure;
      return;
    }
  }
}

void Replicator::report_streaming_again(Reconnect& reconnect) {
  if (reconnect.outage && !reconnect.standby) {
    // One count and one info line per outage, however many attempts it took.
    metrics_.pg_reconnects.inc();
    spdlog::info("postgres: streaming again from slot {}", config_.postgres.slot);
  } else if (reconnect.standby) {
    spdlog::info("postgres: took over slot {}", config_.postgres.slot);
  }
  reconnect.outage = false;
  reconnect.standby = false;
  reconnect.backoff.reset();
}

bool Replicator::recover_from(const PgError& e, Reconnect& reconnect) {
  metrics_.streaming.store(false);
  tracker_.abandon_transaction();
  events_.reset();
  if (replay_) replay_->abandon();
  stream_.reset();
  skip_transaction_ = false;
  // Actions of a half-read transaction may sit in local_: deleting them is harmless
  // and the transaction is resent after reconnecting, so they are simply handed on.
  if (!flush_local()) return false;
  conn_.close();
  const bool in_use = e.sqlstate() == "55006";
  metrics_.standby.store(in_use);
  report_disconnect(e, in_use, reconnect.outage);
  reconnect.outage = true;
  reconnect.standby = in_use;
  auto delay = reconnect.backoff.next(reconnect.jitter(reconnect.rng));
  // A standby retries within status_interval, so it takes over that fast.
  if (in_use) delay = std::min(delay, config_.postgres.status_interval);
  notifier_.status(status_text_);
  sleep_interruptibly(delay);
  return true;
}

void Replicator::report_disconnect(const PgError& e, bool slot_in_use, bool during_outage) {
  if (slot_in_use) {
    if (!during_outage) {
      spdlog::info("postgres: slot {} is in use by another consumer; standing by to take over",
                   config_.postgres.slot);
    }
    status_text_ = "standby: slot " + config_.postgres.slot + " in use by another consumer";
    return;
  }
  if (!during_outage) {
    spdlog::warn("postgres: {}; reconnecting with backoff", e.what());
  } else {
    spdlog::debug("postgres: {}", e.what());
  }
  status_text_ = "reconnecting to PostgreSQL";
}

int Replicator::open_stream() {
  conn_.connect();
  const SystemIdentity id = conn_.identify_system();
  const auto saved = state_.load();
  if (saved && saved->system_identifier != id.system_id) {
    spdlog::error(
        "state file {} belongs to database system {}, but this server is {}: refusing to stream "
        "(wrong server, or a restored/recreated cluster whose changes walbust never saw). "
        "If caches were flushed, remove {} and start again",
        state_.path(), saved->system_identifier, id.system_id, state_.path());
    return kExitFailure;
  }
  // Only now is this server known to be the one the state file describes (or the first).
  system_id_ = id.system_id;
  database_ = id.dbname;
  adapt_status_interval();
  const std::string& slot_name = config_.postgres.slot;
  const auto slot = conn_.slot_info(slot_name);
  if (const int code = check_slot_and_publication(slot, id.dbname); code >= 0) return code;
  Lsn start = kInvalidLsn;
  if (slot) {
    start = slot->confirmed_flush_lsn;
  } else if (const int code = create_missing_slot(saved, start); code >= 0) {
    return code;
  }
  conn_.start_replication(slot_name, config_.postgres.publication, kInvalidLsn);
  tracker_.start_from(start);
  metrics_.streaming.store(true);
  metrics_.standby.store(false);
  state_valid_ = true;
  save_state();
  status_text_ = "streaming";
  spdlog::info("streaming from slot {} at {} (publication {}, {} rules)", slot_name,
               format_lsn(tracker_.flush_lsn()), config_.postgres.publication, rules_->size());
  return -1;
}

int Replicator::check_slot_and_publication(const std::optional<SlotInfo>& slot,
                                           const std::string& dbname) {
  const std::string& slot_name = config_.postgres.slot;
  if (slot && slot->wal_status == "lost") {
    return handle_gap(
        "replication slot " + slot_name +
        " was invalidated by PostgreSQL (wal_status = lost, max_slot_wal_keep_size exceeded)");
  }
  if (slot && (slot->slot_type != "logical" || slot->plugin != "pgoutput")) {
    spdlog::error(
        "replication slot {} uses plugin '{}' ({}), walbust needs a logical pgoutput slot; "
        "choose another postgres.slot",
        slot_name, slot->plugin, slot->slot_type);
    return kExitUsage;
  }
  if (slot && !dbname.empty() && slot->database != dbname) {
    spdlog::error("replication slot {} belongs to database {}, but postgres.dsn connects to {}",
                  slot_name, slot->database, dbname);
    return kExitUsage;
  }
  if (!conn_.publication_exists(config_.postgres.publication)) {
    spdlog::error(
        "publication {} does not exist in database {}; create it (walbust setup prints the SQL)",
        config_.postgres.publication, dbname);
    return kExitFailure;
  }
  return -1;
}

int Replicator::create_missing_slot(const std::optional<SlotState>& saved, Lsn& start) {
  const std::string& slot_name = config_.postgres.slot;
  if (saved && saved->slot == slot_name) {
    return handle_gap("replication slot " + slot_name +
                      " is missing although walbust streamed from it up to " +
                      format_lsn(saved->acknowledged_lsn));
  }
  if (!config_.postgres.create_slot) {
    spdlog::error(
        "replication slot {} does not exist and postgres.create_slot is false; create it with: "
        "SELECT pg_create_logical_replication_slot('{}', 'pgoutput');",
        slot_name, slot_name);
    return kExitGap;
  }
  start = conn_.create_slot(slot_name, false);
  spdlog::info("created replication slot {} at {}", slot_name, format_lsn(start));
  return -1;
}

int Replicator::handle_gap(const std::string& what) {
  const std::string& slot = config_.postgres.slot;
  if (config_.on_gap == "fail") {
    spdlog::error(
        "replication gap: {}. Changes were missed and caches may be stale. walbust never recreates "
        "the slot silently. To recover: flush the affected caches (or set on_gap: flush_rules / "
        "flushdb), then drop the slot if it still exists (SELECT pg_drop_replication_slot('{}');) "
        "and remove {}; the next start creates a new slot",
        what, slot, state_.path());
    return kExitGap;
  }
  spdlog::warn("replication gap: {}; on_gap is {}: recreating the slot, then flushing", what,
               config_.on_gap);
  if (conn_.slot_info(slot)) {
    (void)conn_.query_value("SELECT pg_catalog.pg_drop_replication_slot(" +
                            conn_.quote_literal(slot) + ")::text");
  }
  // The new slot exists before the flush, so every change after the flush is streamed.
  const Lsn start = conn_.create_slot(slot, false);
  for (const auto& target : config_.targets) {
    auto sink = make_key_sink(target.settings, read_password_file(target.settings.password_file));
    try {
      sink->connect();
      if (config_.on_gap == "flushdb") {
        sink->flush_database();
        spdlog::warn("redis {}: FLUSHDB done after the gap", sink->describe());
      } else {
        auto patterns = rules_->all_keys_as_patterns();
        // Constant version keys are set to the new slot's start: a value never used before.
        for (auto& a : patterns) {
          if (a.kind == ActionKind::BumpVersion) a.value = std::to_string(start);
        }
        std::vector<const Action*> ptrs;
        for (const auto& a : patterns) ptrs.push_back(&a);
        const BatchResult r = sink->apply(ptrs);
        spdlog::warn("redis {}: deleted {} keys matching {} rule templates after the gap",
                     sink->describe(), r.existed, patterns.size());
      }
    } catch (const RedisError& e) {
      // The slot was recreated but the flush did not happen, and the next start would see
      // no gap: say loudly what must be done by hand.
      spdlog::error(
          "redis {}: flushing after the gap failed: {}. Flush the caches by hand before trusting "
          "them",
          sink->describe(), e.what());
      return kExitGap;
    }
  }
  tracker_.start_from(start);
  conn_.start_replication(slot, config_.postgres.publication, kInvalidLsn);
  metrics_.streaming.store(true);
  state_valid_ = true;
  save_state();
  status_text_ = "streaming";
  return -1;
}

void Replicator::adapt_status_interval() {
  auto interval = config_.postgres.status_interval;
  try {
    const auto text = conn_.query_value("SHOW wal_sender_timeout");
    const auto timeout =
        text ? parse_duration(*text, DurationSyntax::PostgresSetting) : std::nullopt;
    // The walsender drops a consumer silent for wal_sender_timeout; replying at least
    // every half of it keeps even a consumer blocked on a slow Redis connected.
    if (timeout && timeout->count() > 0 && *timeout / 2 < interval) {
      interval = std::max(std::chrono::milliseconds(100), *timeout / 2);
      spdlog::info(
          "postgres: wal_sender_timeout is {}; sending status updates every {} ms instead of every "
          "{}",
          *text, interval.count(), format_duration(config_.postgres.status_interval));
    }
  } catch (const PgError& e) {
    spdlog::debug("postgres: cannot read wal_sender_timeout: {}", e.what());
  }
  schedule_.set_status_interval(interval);
}

void Replicator::tick() {
  const auto now = Clock::now();
  metrics_.source_heartbeat.beat();
  if (conn_.connected() && metrics_.streaming.load() && schedule_.status_due(now)) send_status();
  if (now >= next_watchdog_) {
    // Only ping while both sides make progress: a stalled sink (or this loop not getting
    // here) lets systemd restart the service.
    if (sinks_alive()) notifier_.watchdog();
    next_watchdog_ =
        now + std::chrono::duration_cast<Clock::duration>(*notifier_.watchdog_interval());
  }
  if (!ready_sent_ && (metrics_.streaming.load() || metrics_.standby.load()) &&
      std::all_of(metrics_.targets.begin(), metrics_.targets.end(),
                  [](const auto& t) { return t->up.load(); })) {
    notifier_.ready();
    notifier_.status(status_text_);
    ready_sent_ = true;
  }
  if (now >= next_progress_) report_progress(now);
}

void Replicator::check_silence(Clock::time_point now) {
  switch (schedule_.silence(now)) {
    case StatusSchedule::Silence::Dead:
      throw PgError("", schedule_.why_dead(now));
    case StatusSchedule::Silence::AskForReply:
      send_status(true);
      break;
    case StatusSchedule::Silence::Fine:
      break;
  }
}

void Replicator::stream_loop() {
  schedule_.restart(Clock::now());
  while (!stopping()) {
    tick();
    if (!stream_.in_transaction()) maybe_reload();
    binder_->tick(Clock::now());
    serve_sources_while_busy(Clock::now());
    if (replay_) {
      release_replayed();
      if (!stream_.in_transaction() && replay_->full()) wait_for_replay_room();
    }
    const ReplicationFrame frame = conn_.try_read();
    if (frame.kind != ReplicationFrame::Kind::None) {
      const auto now = Clock::now();
      read_window_.frame(now);
      schedule_.received(now);
    }
    switch (frame.kind) {
      case ReplicationFrame::Kind::XLogData:
        stream_.feed(frame.payload, frame.data_start, *this);
        break;
      case ReplicationFrame::Kind::Keepalive:
        if (!on_keepalive(frame)) return;
        break;
      case ReplicationFrame::Kind::End:
        throw PgError("", "the server ended the replication stream");
      case ReplicationFrame::Kind::None:
        if (!wait_for_data()) return;
        break;
    }
  }
}

bool Replicator::on_keepalive(const ReplicationFrame& frame) {
  metrics_.server_wal_end.store(std::max(metrics_.server_wal_end.load(), frame.wal_end));
  if (!stream_.in_transaction()) {
    // Everything before walEnd was read; once it is all confirmed, walEnd is safe. What is
    // gathered is not handed over here: a walsender that is ahead of our confirmations
    // sends a keepalive after each transaction, and a hand-over per keepalive would cut
    // the transactions read in one wake-up into a batch of one and a batch of the rest,
    // two round trips to Redis. AckTracker already waits for every ticket issued.
    tracker_.keepalive(frame.wal_end);
    if (endpos_ && frame.wal_end >= *endpos_) endpos_reached_ = true;
  }
  if (frame.reply_requested) send_status();
  return true;
}

bool Replicator::wait_for_data() {
  // Nothing buffered: hand over what was gathered before blocking, so batching
  // never adds latency. Inside a transaction nothing can be acknowledged before
  // its Commit, so small pieces wait for it (large ones go every kLocalChunk):
  // fewer, fuller pipelines and fewer thread wake-ups under load.
  if ((!stream_.in_transaction() || local_size() >= kLocalChunk) && !flush_local()) return false;
  const auto now = Clock::now();
  check_silence(now);
  // Ask where the server is, so --endpos ends promptly on an idle database.
  const bool probing = endpos_ && tracker_.idle();
  if (probing && schedule_.endpos_probe_due(now)) send_status(true);
  const auto deadline = std::min({schedule_.next_wakeup(now, probing), next_progress_,
                                  next_watchdog_, binder_->next_refresh(), replay_deadline()});
  // Round by round before READY and with --endpos: READY goes out the moment every target
  // answered, and --endpos probes the moment the last confirmation lands.
  if (endpos_ || !ready_sent_) {
    (void)serve_loop(deadline, Rounds::One, conn_.stream_socket());
    return true;
  }
  // Between transactions, while commits are dense, the stream's socket is left unwatched
  // until a read window after the last frame (ReadWindow; keepalive requests included,
  // answered at most that much later); the targets, deadlines and signals are served as
  // always. The stream loop then comes round, and the next wait here watches the socket.
  const auto window_end = read_window_.until();
  if (!stream_.in_transaction() && now < window_end) {
    (void)serve_loop(std::min(deadline, window_end), Rounds::UntilNews);
    return true;
  }
  (void)serve_loop(deadline, Rounds::UntilNews, conn_.stream_socket());
  return true;
}

bool Replicator::serve_loop(Clock::time_point until, Rounds rounds, int fd) {
  const bool readable =
      rounds == Rounds::One ? loop_.run_once(until, fd) : loop_.run_until(until, fd);
  next_busy_round_ = Clock::now() + kBusyRoundInterval;
  return readable;
}

void Replicator::serve_sources_while_busy(Clock::time_point now) {
  if (now >= next_busy_round_) (void)serve_loop(now, Rounds::One);
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
  events_.begin(begin.final_lsn, begin.xid);
  if (replay_) replay_->begin(begin.final_lsn, Clock::now());
}

void Replicator::on_change(const Change& change) {
  if (skip_transaction_) return;
  metrics_.changes.fetch_add(1, std::memory_order_relaxed);
  metrics_.changes_for(change.relation, change.op).inc();
  actions_.clear();
  failures_.clear();
  published_.clear();
  binder_->plan(change, actions_, &failures_, &published_);
  for (auto& action : actions_) {
    if (replay_) replay_->add(action, rule_targets_[action.rule]);
    std::uint64_t mask = rule_targets_[action.rule];
    for (std::size_t t = 0; mask != 0; ++t, mask >>= 1) {
      if ((mask & 1U) == 0) continue;
      QueueItem item;
      item.kind = QueueItem::Kind::Action;
      // The last target takes the action itself; earlier ones take copies.
      item.action = (mask == 1U) ? std::move(action) : action;
      local_[t].push_back(std::move(item));
    }
  }
  // After the change's deletes: a full part of an event goes out behind them.
  if (!published_.empty()) {
    events_.add(*rules_, published_, rule_targets_, event_actions_);
    queue_events();
  }
  if (spdlog::should_log(spdlog::level::trace)) {
    spdlog::trace("{} {} at {} (xid {}): {} actions", op_name(change.op),
                  change.relation->qualified_name(), format_lsn(change.lsn), change.xid,
                  actions_.size());
  }
  for (const auto& f : failures_) {
    const std::string& rule = rules_->rule(f.rule).name;
    metrics_.render_failures(rule, f.reason).inc();
    if (warned_failures_.emplace(f.rule, f.reason).second) {
      spdlog::warn(
          "rule {}: a key could not be rendered for {} at {} ({}{}); such keys are skipped, "
          "further occurrences are only counted in walbust_render_failures_total",
          rule, change.relation->qualified_name(), format_lsn(change.lsn), f.reason,
          f.column.empty() ? "" : ", column " + f.column);
    }
  }
  // Large transactions stream through: their deletes go out while the rest is read.
  if (local_size() >= kLocalChunk && !flush_local()) Signals::request_stop();
}

void Replicator::on_relation(const Relation& relation) { binder_->on_relation(relation); }

void Replicator::on_commit(const TransactionCommit& commit) {
  if (skip_transaction_) return;
  // The events follow every delete of the transaction and precede its commit marker, so
  // the acknowledgement waits for Redis to confirm them.
  events_.commit(event_actions_);
  queue_events();
  QueueItem item;
  item.kind = QueueItem::Kind::Commit;
  item.ticket = tracker_.commit(commit.end_lsn);
  item.end_lsn = commit.end_lsn;
  item.commit_time_us = commit.commit_time_us;
  for (auto& local : local_) local.push_back(item);
  if (replay_) hold_for_replay(item.ticket, commit);
  metrics_.transactions.inc();
  read_window_.commit(commit.commit_time_us);
  metrics_.commit_to_receive.observe(
      static_cast<double>(pg_epoch_now_us() - commit.commit_time_us) / 1e6);
  if (endpos_ && commit.end_lsn >= *endpos_) endpos_reached_ = true;
}

void Replicator::queue_events() {
  for (auto& e : event_actions_) {
    QueueItem item;
    item.kind = QueueItem::Kind::Action;
    item.action = std::move(e.action);
    local_[e.target].push_back(std::move(item));
  }
  event_actions_.clear();
}

bool Replicator::flush_local() {
  for (std::size_t t = 0; t < local_.size(); ++t) {
    if (!push_local(t)) return false;
  }
  return true;
}

bool Replicator::push_local(std::size_t t) {
  if (local_[t].empty()) return true;
  while (sinks_[t]->full()) {
    // The target is behind (Redis slow or down): keep the walsender from timing us out,
    // systemd informed and the replicas read while the loop serves it.
    tick();
    const auto deadline =
        std::min({schedule_.next_status(), next_watchdog_, Clock::now() + std::chrono::seconds(1)});
    (void)serve_loop(deadline, Rounds::One);
    // The socket was not read meanwhile, so silence since then says nothing about the
    // server.
    schedule_.forgive_silence(Clock::now());
    if (Signals::stop_requested()) return false;
    for (const auto& sink : sinks_) {
      if (sink->failed()) return false;
    }
  }
  sinks_[t]->push(local_[t]);
  return true;
}

void Replicator::send_status(bool reply_requested) {
  const Lsn flush = tracker_.flush_lsn();
  conn_.send_status(flush, reply_requested);
  metrics_.confirmed_flush_lsn.set(static_cast<double>(flush));
  schedule_.status_sent(Clock::now(), reply_requested);
  if (flush != last_saved_lsn_ && state_valid_) {
    state_writer_.submit(SlotState{system_id_, database_, config_.postgres.slot, flush});
    last_saved_lsn_ = flush;
  }
}

void Replicator::save_state() {
  // Only a run that streamed has something true to record: a refused start (another
  // database system, a gap) must leave the file as it was.
  if (!state_valid_) return;
  const Lsn flush = tracker_.flush_lsn();
  try {
    state_writer_.save_now(SlotState{system_id_, database_, config_.postgres.slot, flush});
    last_saved_lsn_ = flush;
  } catch (const std::exception& e) {
    // Losing the state file only weakens gap detection; it must not stop invalidation.
    spdlog::warn("{}", e.what());
  }
}

void Replicator::report_progress(Clock::time_point now) {
  next_progress_ = now + kProgressInterval;
  double keys = 0;
  for (const auto& t : metrics_.targets) keys += t->keys_deleted.value();
  const Snapshot cur{static_cast<double>(metrics_.changes.load()), keys,
                     metrics_.transactions.value(), now};
  const double secs =
      std::max(1e-3, std::chrono::duration<double>(now - last_progress_.at).count());
  const double change_rate = (cur.changes - last_progress_.changes) / secs;
  const double key_rate = (cur.keys - last_progress_.keys) / secs;
  const Lsn flush = tracker_.flush_lsn();
  const double lag = metrics_.lag_bytes.value();
  if (cur.transactions != last_progress_.transactions) {
    spdlog::info(
        "progress: {:.0f} changes/s, {:.0f} keys/s, {:.0f} transactions, acknowledged {}, lag "
        "{:.0f} bytes, "
        "queue {}",
        change_rate, key_rate, cur.transactions - last_progress_.transactions, format_lsn(flush),
        lag, queued());
  }
  last_progress_ = cur;
  if (metrics_.streaming.load()) {
    bool redis_up = std::all_of(metrics_.targets.begin(), metrics_.targets.end(),
                                [](const auto& t) { return t->up.load(); });
    status_text_ = std::string(redis_up ? "streaming"
                                        : "streaming, Redis unreachable (nothing acknowledged)") +
                   fmt::format("; {:.0f} changes/s, {:.0f} keys/s; lag {:.0f} bytes; acked {}",
                               change_rate, key_rate, lag, format_lsn(flush)) +
                   replica_status();
    const auto unbound = binder_->unbound_lines();
    if (!unbound.empty()) {
      status_text_ += fmt::format("; {} rule(s) cannot match: {}", unbound.size(), unbound.front());
      if (unbound.size() > 1) status_text_ += ", ...";
    }
  }
  notifier_.status(status_text_);
}

void Replicator::maybe_reload() {
  if (!Signals::take_reload()) return;
  notifier_.reloading();
  Diagnostics diags;
  auto config = load_config(config_.path, diags);
  std::optional<RuleSet> rules;
  if (config) {
    RuleSet loaded = load_rules(*config, diags);
    if (diags.empty()) check_rule_targets(*config, loaded, diags);
    if (diags.empty()) rules = std::move(loaded);
  }
  if (rules) {
    // Rules swap between transactions: every change of one transaction sees one rule set.
    rules_ = std::make_shared<const RuleSet>(std::move(*rules));
    rule_targets_ = rule_target_masks(*rules_, config_.targets);
    warned_failures_.clear();
    binder_->set_rules(rules_);
    for (const auto& name : restart_only_changes(config_, *config)) {
      spdlog::warn("reload: {} changed; that takes effect only after a restart", name);
    }
    for (const auto& name : rules_sending_nowhere(*rules_, rule_targets_)) {
      spdlog::warn("reload: rule {} names no running target; it deletes nothing until a restart",
                   name);
    }
    const bool log_changed = config->log != config_.log;
    take_reloadable(config_, *config);
    if (log_changed) setup_logging(config_.log);
    metrics_.reloads_ok.inc();
    spdlog::info("reloaded {}: {} rules", config_.path, rules_->size());
  } else {
    for (const auto& d : diags.items()) spdlog::error("reload: {}", d.format());
    metrics_.reloads_error.inc();
    spdlog::error("reload failed with {} error(s); the previous rules stay in effect",
                  diags.size());
  }
  notifier_.ready();
  notifier_.status(status_text_);
}

void Replicator::shutdown(bool drain_fully) {
  notifier_.stopping();
  const int sig = Signals::stop_signal();
  if (sig != 0)
    spdlog::info("received signal {}: finishing in-flight deletes, then acknowledging", sig);
  // Hand over what was read; without a stream connection this may be partial work of an
  // unacknowledged transaction, which is harmless.
  for (std::size_t t = 0; t < local_.size(); ++t) {
    sinks_[t]->push(local_[t]);
    sinks_[t]->close();  // the target applies its backlog, then ends
  }
  const auto deadline = drain_fully ? Clock::time_point::max() : Clock::now() + kShutdownGrace;
  auto all_finished = [this] {
    return std::all_of(sinks_.begin(), sinks_.end(), [](const auto& s) { return s->finished(); });
  };
  while (Clock::now() < deadline && !all_finished()) {
    (void)loop_.run_once(std::min(deadline, Clock::now() + std::chrono::milliseconds(100)));
  }
  if (!all_finished()) {
    // Past the grace period the rest is dropped unacknowledged: PostgreSQL resends it.
    spdlog::warn(
        "shutdown: Redis did not confirm {} queued actions in time; they stay unacknowledged",
        queued());
  }
  for (auto& sink : sinks_) {
    sink->abandon();
    loop_.remove(*sink);
  }
  if (conn_.connected() && metrics_.streaming.load()) {
    try {
      send_status();
      conn_.finish_stream();
    } catch (const PgError& e) {
      spdlog::warn("postgres: final acknowledgement not sent: {}", e.what());
    }
  }
  conn_.close();
  state_writer_.stop();
  save_state();
  if (slot_poller_) {
    loop_.remove(*slot_poller_);
    slot_poller_->close();
  }
  if (replica_poller_) {
    loop_.remove(*replica_poller_);
    replica_poller_->close();
  }
  if (metrics_server_) metrics_server_->stop();
  spdlog::info("stopped; acknowledged up to {}", format_lsn(tracker_.flush_lsn()));
}

}  // namespace walbust
