#pragma once
// The sink thread of one Redis target: takes batches from the queue, applies them with
// retries (capped exponential backoff with jitter) and confirms to the AckTracker only
// what Redis acknowledged. A fatal Redis error (bad password, missing ACL permission)
// stops the daemon instead of retrying forever. Second deletes (redelete_after) are
// issued from here too, outside the acknowledgement path.
//
// The source thread may apply a small batch itself (try_apply_now) when this thread is
// idle: on a busy machine every hand-over costs two thread wake-ups per round trip, and
// each wake-up preempts whoever runs, the walsender included. The connection is shared
// under a mutex; the worker pops only while holding it and the source applies only when
// the queue is empty, so batches reach Redis and the AckTracker in order.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "run_metrics.h"
#include "walbust/core/ack_tracker.h"
#include "walbust/core/action_queue.h"
#include "walbust/core/redelete_queue.h"
#include "walbust/io/config.h"

namespace walbust {

class RedisClient;
class RedisError;
struct BatchResult;

class SinkWorker {
 public:
  SinkWorker(std::size_t target_index, const RedisTarget& target, std::string password,
             const BatchSettings& batch, ActionQueue& queue, AckTracker& tracker,
             TargetMetrics& metrics, Counter& redeletes);
  ~SinkWorker();

  // Starts the thread, which connects to Redis at once (retrying until it answers or the
  // worker is abandoned) and then applies batches until the queue is closed and drained.
  void start();
  // Stop retrying a failing batch (shutdown deadline passed); pending work is dropped,
  // which is safe because it was never acknowledged.
  void abandon();
  void join();

  // From the source thread: applies `items` (complete, in order after everything handed
  // over before) on this worker's connection and confirms them, when the worker is idle,
  // its connection healthy, the queue empty and the batch small. True when done (`items`
  // is then empty); false leaves `items` untouched for the queue, also after a Redis error,
  // which the worker then retries with its usual backoff.
  bool try_apply_now(std::vector<QueueItem>& items);

  // Batches larger than this go through the queue: the source keeps decoding meanwhile.
  static constexpr std::size_t kApplyNowMaxActions = 256;

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
  // Bookkeeping after Redis confirmed `actions` of `batch` (`result`, when there were
  // any): metrics, second deletes, commit→delete latency and the confirmation to the
  // AckTracker. Under conn_mu_.
  void confirmed(const std::vector<QueueItem>& batch, const std::vector<const Action*>& actions,
                 const BatchResult& result);
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
  RedeleteQueue redelete_{kRedeleteCapacity};  // under conn_mu_
  std::mutex conn_mu_;          // held while the connection is in use, by either thread
  Connection* conn_ = nullptr;  // the worker's connection once connected; under conn_mu_
  std::vector<const Action*> apply_now_actions_;  // try_apply_now's scratch; under conn_mu_
  std::thread thread_;
  std::atomic<bool> abandoned_{false};
  std::atomic<bool> failed_{false};
  std::atomic<bool> finished_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string failure_;
};

}  // namespace walbust
