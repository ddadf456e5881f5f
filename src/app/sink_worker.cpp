#include "sink_worker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <random>

#include "signals.h"
#include "walbust/core/backoff.h"
#include "walbust/io/pg_replication.h"
#include "walbust/io/redis_client.h"

namespace walbust {

struct SinkWorker::Connection {
  // The log names the target and its servers, so a TLS or failover message says which.
  Connection(std::unique_ptr<KeySink> s, const std::string& name)
      : sink(std::move(s)), where("target " + name + " (" + sink->describe() + ")") {}
  std::unique_ptr<KeySink> sink;
  std::string where;
  Backoff backoff{std::chrono::milliseconds(100), std::chrono::seconds(10)};
  std::mt19937_64 rng{std::random_device{}()};
  bool outage = false;
  std::chrono::steady_clock::time_point outage_started{};
};

std::size_t SinkWorker::backlog_capacity(const BatchSettings& batch) {
  return std::max<std::size_t>(2 * batch.max_keys, 4096);
}

SinkWorker::SinkWorker(std::size_t target_index, std::string name, SinkFactory make_sink,
                       const BatchSettings& batch, AckTracker& tracker, TargetMetrics& metrics,
                       Counter& redeletes, EventLoop::NowFn now)
    : target_index_(target_index),
      name_(std::move(name)),
      make_sink_(std::move(make_sink)),
      batch_(batch),
      tracker_(tracker),
      metrics_(metrics),
      redeletes_(redeletes),
      now_(std::move(now)),
      backlog_(backlog_capacity(batch)),
      fiber_([this] { body(); }) {}

SinkWorker::SinkWorker(std::size_t target_index, const RedisTarget& target,
                       const std::string& password, const BatchSettings& batch, AckTracker& tracker,
                       TargetMetrics& metrics, Counter& redeletes)
    : SinkWorker(
          target_index, target.name,
          [settings = target.settings, password] { return make_key_sink(settings, password); },
          batch, tracker, metrics, redeletes) {}

SinkWorker::~SinkWorker() { abandon(); }

void SinkWorker::start() {
  if (!fiber_.started()) resume(Fiber::Wake::Ready);
}

void SinkWorker::resume(Fiber::Wake wake) {
  fiber_.resume(wake);
  if (fiber_.finished()) return;
  const auto now = now_();
  deadline_ = now + fiber_.wait_timeout();
  defer_until_ = now + kReplyDeferral;
}

void SinkWorker::push(std::vector<QueueItem>& items) {
  if (items.empty()) return;
  backlog_.push(items);
  queued_.store(backlog_.size(), std::memory_order_relaxed);
  // An idle target writes at once; a gathering one once a full batch is there.
  if (waiting_ == Waiting::Work ||
      (waiting_ == Waiting::Gathering && backlog_.size() >= batch_.max_keys)) {
    resume(Fiber::Wake::Ready);
  }
}

void SinkWorker::close() {
  closed_ = true;
  if (waiting_ == Waiting::Work) resume(Fiber::Wake::Ready);
}

void SinkWorker::abandon() { fiber_.cancel(); }

EventLoop::Clock::time_point SinkWorker::prepare(std::vector<pollfd>& fds) {
  if (!fiber_.started() || fiber_.finished()) return Clock::time_point::max();
  defers_ = false;
  if (fiber_.wait_fd() < 0) return deadline_;
  fds.push_back(pollfd{fiber_.wait_fd(), fiber_.wait_events(), 0});
  // Only a reply, and only while nothing waits for the next pipeline.
  defers_ = in_pipeline_ && fiber_.wait_events() == POLLIN && backlog_.empty() && !closed_ &&
            now_() < defer_until_;
  return defers_ ? std::min(deadline_, defer_until_) : deadline_;
}

void SinkWorker::dispatch(Clock::time_point now, std::span<const pollfd> ready) {
  if (!fiber_.started() || fiber_.finished()) return;
  if (!ready.empty() && ready.front().revents != 0) {
    resume(Fiber::Wake::Ready);
  } else if (now >= deadline_) {
    resume(Fiber::Wake::Timeout);
  }
}

void SinkWorker::body() {
  Connection c(make_sink_(), name_);
  // Connect eagerly: readiness (READY=1, /healthz) means Redis answered.
  while (!c.sink->connected()) {
    std::optional<RedisError> error;
    try {
      c.sink->connect();
      on_success(c);
    } catch (const RedisError& e) {
      error = e;
    }
    if (error && !on_error(c, *error)) return;
  }
  apply_batches(c);
}

void SinkWorker::take(std::vector<QueueItem>& batch, std::size_t max_actions) {
  (void)backlog_.take(batch, max_actions);
  queued_.store(backlog_.size(), std::memory_order_relaxed);
}

void SinkWorker::wait_for_work() {
  const auto now = now_();
  const auto until = std::min(now + std::chrono::seconds(1), redelete_.next_due());
  waiting_ = Waiting::Work;
  (void)fiber_wait(-1, 0, std::chrono::ceil<std::chrono::milliseconds>(std::max(until - now, {})));
  waiting_ = Waiting::Nothing;
}

void SinkWorker::gather(std::vector<QueueItem>& batch) {
  // Latency traded for fewer round trips: more keys for up to max_delay.
  const auto until = now_() + batch_.max_delay;
  while (!fiber_.cancelled()) {
    const auto n = static_cast<std::size_t>(
        std::count_if(batch.begin(), batch.end(),
                      [](const QueueItem& item) { return item.kind == QueueItem::Kind::Action; }));
    if (n >= batch_.max_keys) return;
    take(batch, batch_.max_keys - n);
    const auto now = now_();
    if (now >= until || closed_) return;
    waiting_ = Waiting::Gathering;
    (void)fiber_wait(-1, 0, std::chrono::ceil<std::chrono::milliseconds>(until - now));
    waiting_ = Waiting::Nothing;
  }
}

namespace {

// The actions of a batch, in order.
void collect_actions(const std::vector<QueueItem>& batch, std::vector<const Action*>& actions) {
  for (const auto& item : batch) {
    if (item.kind == QueueItem::Kind::Action) actions.push_back(&item.action);
  }
}

}  // namespace

void SinkWorker::apply_batches(Connection& c) {
  std::vector<QueueItem> batch;
  std::vector<const Action*> actions;
  while (!fiber_.cancelled()) {
    metrics_.heartbeat.beat();
    if (backlog_.empty()) {
      if (closed_) return;
      apply_redeletes(c);
      if (backlog_.empty() && !closed_) wait_for_work();
      continue;
    }
    batch.clear();
    take(batch, batch_.max_keys);
    if (batch_.max_delay.count() > 0) gather(batch);
    actions.clear();
    collect_actions(batch, actions);
    BatchResult result;
    if (!actions.empty() && !apply_with_retries(c, actions, result)) return;
    confirmed(batch, actions, result);
    apply_redeletes(c);
  }
}

bool SinkWorker::apply_with_retries(Connection& c, const std::vector<const Action*>& actions,
                                    BatchResult& result) {
  while (true) {
    std::optional<RedisError> error;
    try {
      if (!c.sink->connected()) c.sink->connect();
      in_pipeline_ = true;
      result = c.sink->apply(actions);
    } catch (const RedisError& e) {
      error = e;
    }
    in_pipeline_ = false;
    if (!error) {
      on_success(c);
      return true;
    }
    if (!on_error(c, *error)) return false;
  }
}

bool SinkWorker::on_error(Connection& c, const RedisError& e) {
  c.sink->close();
  if (fiber_.cancelled()) return false;  // abandoned: the error is the cancellation itself
  metrics_.errors.inc();
  metrics_.up.store(false);
  metrics_.heartbeat.beat();
  if (e.fatal()) {
    failure_ = e.what();
    spdlog::error("redis {}: {}; this needs a configuration change, stopping", c.where, e.what());
    failed_ = true;
    Signals::request_stop();
    return false;
  }
  if (!c.outage) {
    spdlog::warn("redis {}: {}; retrying with backoff, nothing is acknowledged meanwhile", c.where,
                 e.what());
    c.outage = true;
    c.outage_started = now_();
  }
  std::uniform_real_distribution<double> jitter(0.0, 1.0);
  return pause_for(c.backoff.next(jitter(c.rng)));
}

void SinkWorker::on_success(Connection& c) {
  metrics_.up.store(true);
  metrics_.set_master(c.sink->current_master());
  metrics_.heartbeat.beat();
  if (!c.outage) return;
  const std::chrono::duration<double> took = now_() - c.outage_started;
  spdlog::info("redis {}: reachable again after {:.1f}s and {} attempts", c.where, took.count(),
               c.backoff.attempts());
  metrics_.reconnects.inc();
  c.outage = false;
  c.backoff.reset();
}

void SinkWorker::confirmed(const std::vector<QueueItem>& batch,
                           const std::vector<const Action*>& actions, const BatchResult& result) {
  if (!actions.empty()) {  // a batch of commits only sent nothing to Redis
    metrics_.keys_deleted.inc(static_cast<double>(result.keys));
    metrics_.keys_existed.inc(static_cast<double>(result.existed));
    metrics_.commands.inc(static_cast<double>(result.commands));
    metrics_.batches.inc();
    metrics_.batch_keys.observe(static_cast<double>(result.keys));
    const auto now = now_();
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
  if (redelete_.next_due() > now_()) return;
  std::vector<std::string> keys;
  redelete_.pop_due(now_(), batch_.max_keys, keys);
  if (keys.empty()) return;
  std::vector<Action> actions(keys.size());
  std::vector<const Action*> ptrs;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    actions[i].key = std::move(keys[i]);
    ptrs.push_back(&actions[i]);
  }
  bool sent = false;
  try {
    if (!c.sink->connected()) c.sink->connect();
    const BatchResult result = c.sink->apply(ptrs);
    metrics_.commands.inc(static_cast<double>(result.commands));
    redeletes_.inc(static_cast<double>(result.keys));
    sent = true;
  } catch (const RedisError&) {
    // Best effort, but not silently: counted, and retried after the main path recovers.
    metrics_.errors.inc();
  }
  if (sent) return;
  c.sink->close();
  keys.clear();
  for (auto& a : actions) keys.push_back(std::move(a.key));
  redelete_.requeue(keys, now_() + std::chrono::seconds(1));
}

}  // namespace walbust
