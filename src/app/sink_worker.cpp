#include "sink_worker.h"

#include <spdlog/spdlog.h>

#include <random>

#include "signals.h"
#include "walbust/backoff.h"
#include "walbust/redis_sink.h"

namespace walbust {

SinkWorker::SinkWorker(std::size_t target_index, const RedisTarget& target, std::string password,
                       const BatchSettings& batch, ActionQueue& queue, AckTracker& tracker, RunStats& stats)
    : target_index_(target_index),
      target_(target),
      password_(std::move(password)),
      batch_(batch),
      queue_(queue),
      tracker_(tracker),
      stats_(stats) {}

SinkWorker::~SinkWorker() {
  abandon();
  join();
}

void SinkWorker::start() { thread_ = std::thread([this] { run(); }); }

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
  Signals::block_in_this_thread();
  loop();
  finished_.store(true);
}

void SinkWorker::loop() {
  const auto& settings = target_.settings;
  RedisClient client(settings.endpoint, password_, settings.timeout);
  RedisSink sink(client, settings.delete_command);
  Backoff backoff(std::chrono::milliseconds(100), std::chrono::seconds(10));
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.0, 1.0);

  std::vector<QueueItem> batch;
  std::vector<const Action*> actions;
  bool outage = false;
  auto outage_started = std::chrono::steady_clock::now();
  const std::string where = settings.endpoint.describe();

  // Handles one failed attempt: fatal errors stop the daemon, others back off. Returns
  // false when the worker must exit.
  auto on_error = [&](const RedisError& e) {
    stats_.redis_errors.fetch_add(1);
    stats_.redis_up.store(false);
    if (e.fatal()) {
      {
        std::lock_guard lock(mu_);
        failure_ = e.what();
      }
      spdlog::error("redis {}: {}; this needs a configuration change, stopping", where, e.what());
      failed_.store(true);
      Signals::request_stop();
      return false;
    }
    if (!outage) {
      spdlog::warn("redis {}: {}; retrying with backoff, nothing is acknowledged meanwhile", where, e.what());
      outage = true;
      outage_started = std::chrono::steady_clock::now();
    }
    client.close();
    return sleep_for(backoff.next(jitter(rng)));
  };
  auto on_success = [&] {
    stats_.redis_up.store(true);
    if (!outage) return;
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - outage_started;
    spdlog::info("redis {}: reachable again after {:.1f}s and {} attempts", where, took.count(), backoff.attempts());
    stats_.redis_reconnects.fetch_add(1);
    outage = false;
    backoff.reset();
  };

  // Connect eagerly: readiness (READY=1, /healthz) means Redis answered.
  while (!client.connected()) {
    try {
      client.connect();
      on_success();
    } catch (const RedisError& e) {
      if (!on_error(e)) return;
    }
  }

  while (true) {
    batch.clear();
    const auto popped = queue_.pop(batch, batch_.max_keys, ActionQueue::Clock::now() + std::chrono::seconds(1));
    if (popped == ActionQueue::PopResult::Closed || abandoned_.load()) break;
    if (popped == ActionQueue::PopResult::Timeout) continue;
    if (batch_.max_delay.count() > 0) {
      // Gather more keys for up to max_delay (latency traded for fewer round trips).
      const auto deadline = ActionQueue::Clock::now() + batch_.max_delay;
      while (true) {
        std::size_t n = 0;
        for (const auto& item : batch) n += item.kind == QueueItem::Kind::Action ? 1 : 0;
        if (n >= batch_.max_keys) break;
        if (queue_.pop(batch, batch_.max_keys - n, deadline) != ActionQueue::PopResult::Items) break;
      }
    }
    actions.clear();
    std::uint64_t last_ticket = 0;
    for (const auto& item : batch) {
      if (item.kind == QueueItem::Kind::Action) {
        actions.push_back(&item.action);
      } else {
        last_ticket = item.ticket;
      }
    }
    if (!actions.empty()) {
      while (true) {
        try {
          if (!client.connected()) client.connect();
          const BatchResult result = sink.apply(actions);
          stats_.keys_deleted.fetch_add(result.keys);
          stats_.keys_existed.fetch_add(static_cast<std::uint64_t>(result.existed));
          stats_.redis_commands.fetch_add(result.commands);
          stats_.batches.fetch_add(1);
          on_success();
          break;
        } catch (const RedisError& e) {
          if (!on_error(e)) return;
        }
      }
    }
    if (last_ticket != 0) tracker_.confirm(target_index_, last_ticket);
  }
}

}  // namespace walbust
