#include "sink_worker.h"

#include <spdlog/spdlog.h>

#include <random>

#include "signals.h"
#include "walbust/core/backoff.h"
#include "walbust/io/key_sink.h"
#include "walbust/io/pg_replication.h"
#include "walbust/io/redis_client.h"

namespace walbust {

struct SinkWorker::Connection {
  // The log names the target and its servers, so a TLS or failover message says which.
  Connection(const RedisTarget& t, const std::string& password)
      : sink(make_key_sink(t.settings, password)),
        where("target " + t.name + " (" + sink->describe() + ")") {}
  std::unique_ptr<KeySink> sink;
  std::string where;
  Backoff backoff{std::chrono::milliseconds(100), std::chrono::seconds(10)};
  std::mt19937_64 rng{std::random_device{}()};
  bool outage = false;
  std::chrono::steady_clock::time_point outage_started{};
};

SinkWorker::SinkWorker(std::size_t target_index, const RedisTarget& target, std::string password,
                       const BatchSettings& batch, ActionQueue& queue, AckTracker& tracker,
                       TargetMetrics& metrics, Counter& redeletes)
    : target_index_(target_index),
      target_(target),
      password_(std::move(password)),
      batch_(batch),
      queue_(queue),
      tracker_(tracker),
      metrics_(metrics),
      redeletes_(redeletes) {}

SinkWorker::~SinkWorker() {
  abandon();
  join();
}

void SinkWorker::start() {
  thread_ = std::thread([this] { run(); });
}

void SinkWorker::abandon() {
  abandoned_.store(true);
  cv_.notify_all();
}

void SinkWorker::join() {
  if (thread_.joinable()) thread_.join();
}

std::string SinkWorker::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

bool SinkWorker::sleep_for(std::chrono::milliseconds delay) {
  std::unique_lock lock(mu_);
  return !cv_.wait_for(lock, delay, [this] { return abandoned_.load(); });
}

void SinkWorker::run() {
  Signals::begin_worker_thread("sink " + target_.name);
  Connection c(target_, password_);
  // Connect eagerly: readiness (READY=1, /healthz) means Redis answered.
  while (!c.sink->connected() && !abandoned_.load()) {
    try {
      c.sink->connect();
      on_success(c);
    } catch (const RedisError& e) {
      if (!on_error(c, e)) break;
    }
  }
  if (c.sink->connected()) {
    {
      std::lock_guard lock(conn_mu_);
      conn_ = &c;
    }
    loop(c);
  }
  {
    std::lock_guard lock(conn_mu_);
    conn_ = nullptr;
  }
  finished_.store(true);
}

bool SinkWorker::on_error(Connection& c, const RedisError& e) {
  metrics_.errors.inc();
  metrics_.up.store(false);
  metrics_.heartbeat.beat();
  if (e.fatal()) {
    {
      std::lock_guard lock(mu_);
      failure_ = e.what();
    }
    spdlog::error("redis {}: {}; this needs a configuration change, stopping", c.where, e.what());
    failed_.store(true);
    Signals::request_stop();
    return false;
  }
  if (!c.outage) {
    spdlog::warn("redis {}: {}; retrying with backoff, nothing is acknowledged meanwhile", c.where,
                 e.what());
    c.outage = true;
    c.outage_started = std::chrono::steady_clock::now();
  }
  c.sink->close();
  std::uniform_real_distribution<double> jitter(0.0, 1.0);
  return sleep_for(c.backoff.next(jitter(c.rng)));
}

void SinkWorker::on_success(Connection& c) {
  metrics_.up.store(true);
  metrics_.set_master(c.sink->current_master());
  metrics_.heartbeat.beat();
  if (!c.outage) return;
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - c.outage_started;
  spdlog::info("redis {}: reachable again after {:.1f}s and {} attempts", c.where, took.count(),
               c.backoff.attempts());
  metrics_.reconnects.inc();
  c.outage = false;
  c.backoff.reset();
}

namespace {

// The actions of a batch, in order; false when it holds a pattern (SCAN takes long).
bool collect_actions(const std::vector<QueueItem>& batch, std::vector<const Action*>& actions) {
  bool quick = true;
  for (const auto& item : batch) {
    if (item.kind != QueueItem::Kind::Action) continue;
    actions.push_back(&item.action);
    quick = quick && item.action.kind != ActionKind::DeletePattern;
  }
  return quick;
}

}  // namespace

void SinkWorker::loop(Connection& c) {
  std::vector<QueueItem> batch;
  std::vector<const Action*> actions;
  while (!abandoned_.load()) {
    metrics_.heartbeat.beat();
    batch.clear();
    ActionQueue::Clock::time_point deadline;
    {
      std::lock_guard lock(conn_mu_);
      deadline =
          std::min(ActionQueue::Clock::now() + std::chrono::seconds(1), redelete_.next_due());
    }
    const auto waited = queue_.wait(deadline);
    if (waited == ActionQueue::PopResult::Closed) break;
    // Popping and applying under the connection lock: whenever the source finds the lock
    // free and the queue empty, everything handed over before was confirmed.
    std::lock_guard lock(conn_mu_);
    if (waited == ActionQueue::PopResult::Timeout ||
        queue_.pop(batch, batch_.max_keys, ActionQueue::Clock::now()) !=
            ActionQueue::PopResult::Items) {
      apply_redeletes(c);
      continue;
    }
    if (batch_.max_delay.count() > 0) {
      // Gather more keys for up to max_delay (latency traded for fewer round trips).
      const auto gather_until = ActionQueue::Clock::now() + batch_.max_delay;
      while (true) {
        std::size_t n = 0;
        for (const auto& item : batch) n += item.kind == QueueItem::Kind::Action ? 1 : 0;
        if (n >= batch_.max_keys) break;
        if (queue_.pop(batch, batch_.max_keys - n, gather_until) != ActionQueue::PopResult::Items)
          break;
      }
    }
    actions.clear();
    (void)collect_actions(batch, actions);
    BatchResult result;
    if (!actions.empty()) {
      while (true) {
        try {
          if (!c.sink->connected()) c.sink->connect();
          result = c.sink->apply(actions);
          on_success(c);
          break;
        } catch (const RedisError& e) {
          if (!on_error(c, e)) return;
        }
      }
    }
    confirmed(batch, actions, result);
    apply_redeletes(c);
  }
}

bool SinkWorker::try_apply_now(std::vector<QueueItem>& items) {
  // Gathering for max_delay is this thread's job; a failed or stopping worker gets none.
  if (items.empty() || batch_.max_delay.count() > 0 || abandoned_.load() || failed_.load())
    return false;
  std::unique_lock lock(conn_mu_, std::try_to_lock);
  if (!lock.owns_lock() || conn_ == nullptr || !queue_.empty()) return false;
  Connection& c = *conn_;
  if (c.outage || !c.sink->connected()) return false;
  std::vector<const Action*>& actions = apply_now_actions_;
  actions.clear();
  if (!collect_actions(items, actions) || actions.size() > kApplyNowMaxActions) return false;
  BatchResult result;
  if (!actions.empty()) {
    try {
      result = c.sink->apply(actions);
    } catch (const RedisError& e) {
      // The worker retries these from the queue, counting and logging the error then.
      metrics_.errors.inc();
      spdlog::debug("redis {}: {}; handing the batch to the sink thread", c.where, e.what());
      c.sink->close();
      return false;
    }
    on_success(c);
  }
  confirmed(items, actions, result);
  items.clear();
  return true;
}

void SinkWorker::confirmed(const std::vector<QueueItem>& batch,
                           const std::vector<const Action*>& actions, const BatchResult& result) {
  if (!actions.empty()) {  // a batch of commits only sent nothing to Redis
    metrics_.keys_deleted.inc(static_cast<double>(result.keys));
    metrics_.keys_existed.inc(static_cast<double>(result.existed));
    metrics_.commands.inc(static_cast<double>(result.commands));
    metrics_.batches.inc();
    metrics_.batch_keys.observe(static_cast<double>(result.keys));
    const auto now = RedeleteQueue::Clock::now();
    for (const Action* a : actions) {
      if (a->redelete_after_ms > 0 && a->kind == ActionKind::Delete) {
        redelete_.push(a->key, now + std::chrono::milliseconds(a->redelete_after_ms));
      }
    }
    for (const EventResult& e : result.events) {
      if (e.kind == PublishKind::Stream) {
        metrics_.events_stream.inc();
      } else {
        metrics_.events_channel.inc();
        metrics_.subscribers(e.name).set(static_cast<double>(e.subscribers));
      }
    }
  }
  std::uint64_t last_ticket = 0;
  std::uint64_t last_replayed = 0;  // markers of deletes repeated after replica replay
  const std::int64_t now_us = pg_epoch_now_us();
  for (const auto& item : batch) {
    if (item.kind != QueueItem::Kind::Commit) continue;
    if (item.after_replay) {
      last_replayed = item.ticket;
      continue;
    }
    last_ticket = item.ticket;
    metrics_.commit_to_delete.observe(static_cast<double>(now_us - item.commit_time_us) / 1e6);
  }
  if (last_ticket != 0) tracker_.confirm(target_index_, last_ticket);
  if (last_replayed != 0) tracker_.confirm_replayed(target_index_, last_replayed);
}

void SinkWorker::apply_redeletes(Connection& c) {
  if (redelete_.next_due() > RedeleteQueue::Clock::now()) return;
  std::vector<std::string> keys;
  redelete_.pop_due(RedeleteQueue::Clock::now(), batch_.max_keys, keys);
  if (keys.empty()) return;
  std::vector<Action> actions(keys.size());
  std::vector<const Action*> ptrs;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    actions[i].key = std::move(keys[i]);
    ptrs.push_back(&actions[i]);
  }
  try {
    if (!c.sink->connected()) c.sink->connect();
    const BatchResult result = c.sink->apply(ptrs);
    metrics_.commands.inc(static_cast<double>(result.commands));
    redeletes_.inc(static_cast<double>(result.keys));
  } catch (const RedisError& e) {
    // Best effort, but not silently: retried later, after the main path recovers.
    metrics_.errors.inc();
    c.sink->close();
    (void)e;
    keys.clear();
    for (auto& a : actions) keys.push_back(std::move(a.key));
    redelete_.requeue(keys, RedeleteQueue::Clock::now() + std::chrono::seconds(1));
  }
}

}  // namespace walbust
