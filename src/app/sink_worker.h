#pragma once
// The sink thread of one Redis target: takes batches from the queue, applies them with
// retries (capped exponential backoff with jitter) and confirms to the AckTracker only
// what Redis acknowledged. A fatal Redis error (bad password, missing ACL permission)
// stops the daemon instead of retrying forever.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "run_stats.h"
#include "walbust/ack_tracker.h"
#include "walbust/action_queue.h"
#include "walbust/config.h"

namespace walbust {

class SinkWorker {
 public:
  SinkWorker(std::size_t target_index, const RedisTarget& target, std::string password,
             const BatchSettings& batch, ActionQueue& queue, AckTracker& tracker, RunStats& stats);
  ~SinkWorker();

  // Starts the thread, which connects to Redis at once (retrying until it answers or the
  // worker is abandoned) and then applies batches.
  void start();
  // Stop retrying a failing batch (shutdown deadline passed); pending work is dropped,
  // which is safe because it was never acknowledged.
  void abandon();
  void join();

  [[nodiscard]] bool failed() const { return failed_.load(); }
  // The thread has exited (queue closed and drained, abandoned, or failed).
  [[nodiscard]] bool finished() const { return finished_.load(); }
  [[nodiscard]] std::string failure() const;

 private:
  void run();
  void loop();
  // Waits for `delay` unless abandoned; false when abandoned.
  bool sleep_for(std::chrono::milliseconds delay);

  std::size_t target_index_;
  RedisTarget target_;
  std::string password_;
  BatchSettings batch_;
  ActionQueue& queue_;
  AckTracker& tracker_;
  RunStats& stats_;
  std::thread thread_;
  std::atomic<bool> abandoned_{false};
  std::atomic<bool> failed_{false};
  std::atomic<bool> finished_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string failure_;
};

}  // namespace walbust
