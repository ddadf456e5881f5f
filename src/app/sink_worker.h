#pragma once
// The sink thread of one Redis target: takes batches from the queue, applies them with
// retries (capped exponential backoff with jitter) and confirms to the AckTracker only
// what Redis acknowledged. A fatal Redis error (bad password, missing ACL permission)
// stops the daemon instead of retrying forever. Second deletes (redelete_after) are
// issued from here too, outside the acknowledgement path.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "run_metrics.h"
#include "walbust/ack_tracker.h"
#include "walbust/action_queue.h"
#include "walbust/config.h"
#include "walbust/redelete_queue.h"

namespace walbust {

class RedisClient;
class RedisSink;
class RedisError;

class SinkWorker {
 public:
  SinkWorker(std::size_t target_index, const RedisTarget& target, std::string password, const BatchSettings& batch,
             ActionQueue& queue, AckTracker& tracker, TargetMetrics& metrics, Counter& redeletes);
  ~SinkWorker();

  // Starts the thread, which connects to Redis at once (retrying until it answers or the
  // worker is abandoned) and then applies batches until the queue is closed and drained.
  void start();
  // Stop retrying a failing batch (shutdown deadline passed); pending work is dropped,
  // which is safe because it was never acknowledged.
  void abandon();
  void join();

  [[nodiscard]] bool failed() const { return failed_.load(); }
  // The thread has exited (queue closed and drained, abandoned, or failed).
  [[nodiscard]] bool finished() const { return finished_.load(); }
  [[nodiscard]] std::string failure() const;

  // Second deletes kept in memory at most; beyond it the oldest are dropped.
  static constexpr std::size_t kRedeleteCapacity = 100000;

 private:
  struct Connection;
  void run();
  void loop(Connection& c);
  // Handles one failed attempt: fatal errors stop the daemon, others back off. Returns
  // false when the worker must exit.
  bool on_error(Connection& c, const RedisError& e);
  void on_success(Connection& c);
  void apply_redeletes(Connection& c);
  // Waits for `delay` unless abandoned; false when abandoned.
  bool sleep_for(std::chrono::milliseconds delay);

  std::size_t target_index_;
  RedisTarget target_;
  std::string password_;
  BatchSettings batch_;
  ActionQueue& queue_;
  AckTracker& tracker_;
  TargetMetrics& metrics_;
  Counter& redeletes_;
  RedeleteQueue redelete_{kRedeleteCapacity};
  std::thread thread_;
  std::atomic<bool> abandoned_{false};
  std::atomic<bool> failed_{false};
  std::atomic<bool> finished_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string failure_;
};

}  // namespace walbust
