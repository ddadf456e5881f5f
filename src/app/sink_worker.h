#pragma once
// One Redis target, served by the stream's EventLoop: it takes what the stream hands over
// in batches, applies each with retries (capped exponential backoff with jitter) and
// confirms to the AckTracker only what Redis acknowledged. A fatal Redis error (bad
// password, missing ACL permission) stops the daemon instead of retrying forever. Second
// deletes (redelete_after) are issued from here too, outside the acknowledgement path.
//
// The target's work runs in a Fiber on the loop's thread, so the Redis layer keeps its
// sequential code while every wait of it (a reply, a connect, a backoff) hands the thread
// back to the loop. What that gives, and what the tests check (sink_worker_test):
//  - One batch in flight per target; the next forms in the backlog meanwhile (natural
//    batching), and a batch handed to an idle target is written at once.
//  - Batches reach Redis and confirmations reach the AckTracker in the order the stream
//    handed them over, because one fiber takes them one after the other.
//  - A slow or stalled Redis never delays the stream's status replies or another target:
//    its waits are the loop's fds and deadlines like any other source's.
//  - Nothing here needs a lock: the stream and every target share one thread.
//  - A reply that no batch waits on (the backlog is empty) may be read up to
//    kReplyDeferral late, with the stream's next wake-up instead of a wake-up of its own.
//    A batch handed over meanwhile ends the deferral.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "run_metrics.h"
#include "walbust/core/ack_tracker.h"
#include "walbust/core/redelete_queue.h"
#include "walbust/core/target_backlog.h"
#include "walbust/io/config.h"
#include "walbust/io/event_loop.h"
#include "walbust/io/fiber.h"
#include "walbust/io/key_sink.h"

namespace walbust {

class RedisError;

class SinkWorker final : public EventLoop::Source {
 public:
  using Clock = EventLoop::Clock;
  using SinkFactory = std::function<std::unique_ptr<KeySink>()>;

  // `make_sink` builds the target's connection (tests: a scripted one); `now` is the
  // loop's clock, which turns the fiber's timeouts into deadlines.
  SinkWorker(std::size_t target_index, std::string name, SinkFactory make_sink,
             const BatchSettings& batch, AckTracker& tracker, TargetMetrics& metrics,
             Counter& redeletes, EventLoop::NowFn now = Clock::now);
  SinkWorker(std::size_t target_index, const RedisTarget& target, const std::string& password,
             const BatchSettings& batch, AckTracker& tracker, TargetMetrics& metrics,
             Counter& redeletes);
  ~SinkWorker() override;

  // Connects to Redis (retrying until it answers); batches flow once it did.
  void start();
  // Hands over `items` (complete, in order after everything handed over before); `items`
  // is then empty. An idle target starts writing them before this returns.
  void push(std::vector<QueueItem>& items);
  // The stream hands over nothing more while this holds: memory stays bounded.
  [[nodiscard]] bool full() const { return backlog_.full(); }
  // Handed over and not yet taken into a batch. Any thread (health, progress).
  [[nodiscard]] std::size_t queued() const { return queued_.load(std::memory_order_relaxed); }
  // No more pushes: the backlog is applied, then the fiber ends.
  void close();
  // Stop retrying (shutdown deadline passed): the fiber unwinds now and what was not
  // confirmed is dropped, which is safe because it was never acknowledged.
  void abandon();

  [[nodiscard]] bool failed() const { return failed_; }
  // The fiber ended (closed and drained, abandoned, or failed).
  [[nodiscard]] bool finished() const { return fiber_.finished(); }
  [[nodiscard]] const std::string& failure() const { return failure_; }

  Clock::time_point prepare(std::vector<pollfd>& fds) override;
  void dispatch(Clock::time_point now, std::span<const pollfd> ready) override;
  // Confirmations go to the AckTracker, and a fatal error stops the daemon through the
  // wake fd: the stream has nothing to do after a round of this target's.
  [[nodiscard]] bool serves_itself() const override { return true; }
  [[nodiscard]] bool defers_fds() const override { return defers_; }

  // How late a reply nothing waits on may be read: below the gap between transactions
  // at the rates where wake-ups cost the most, and small beside a status interval.
  static constexpr auto kReplyDeferral = std::chrono::milliseconds(1);

  // Second deletes kept in memory at most; beyond it the oldest are dropped.
  static constexpr std::size_t kRedeleteCapacity = 100000;
  // The backlog's bound: two batches, one in flight and one forming.
  [[nodiscard]] static std::size_t backlog_capacity(const BatchSettings& batch);

 private:
  struct Connection;
  void body();
  void apply_batches(Connection& c);
  // Sends `actions` until Redis confirmed them; false when the fiber must end.
  bool apply_with_retries(Connection& c, const std::vector<const Action*>& actions,
                          BatchResult& result);
  // Handles one failed attempt: fatal errors stop the daemon, others back off. Returns
  // false when the fiber must end. Called outside any catch handler: it waits.
  bool on_error(Connection& c, const RedisError& e);
  void on_success(Connection& c);
  void apply_redeletes(Connection& c);
  // Waits for the stream to hand over work, a second delete to come due, or a second.
  void wait_for_work();
  // With batch.max_delay: takes more of the backlog for up to max_delay.
  void gather(std::vector<QueueItem>& batch);
  // Bookkeeping after Redis confirmed `actions` of `batch` (`result`, when there were
  // any): metrics, second deletes, commit→delete latency and the confirmation to the
  // AckTracker.
  void confirmed(const std::vector<QueueItem>& batch, const std::vector<const Action*>& actions,
                 const BatchResult& result);
  void take(std::vector<QueueItem>& batch, std::size_t max_actions);
  // Resumes the fiber and turns the timeout of its next wait into a deadline.
  void resume(Fiber::Wake wake);

  std::size_t target_index_;
  std::string name_;
  SinkFactory make_sink_;
  BatchSettings batch_;
  AckTracker& tracker_;
  TargetMetrics& metrics_;
  Counter& redeletes_;
  EventLoop::NowFn now_;
  TargetBacklog backlog_;
  std::atomic<std::size_t> queued_{0};
  RedeleteQueue redelete_{kRedeleteCapacity};
  Fiber fiber_;
  Clock::time_point deadline_ = Clock::time_point::max();  // of the fiber's current wait
  Clock::time_point defer_until_{};  // a reply the fiber waits for may wait until then
  bool in_pipeline_ = false;         // the fiber is between writing a batch and its reply
  bool defers_ = false;              // the last prepare() deferred the fiber's fd
  enum class Waiting { Nothing, Work, Gathering };
  Waiting waiting_ = Waiting::Nothing;  // a wait the stream's push() ends early
  bool closed_ = false;
  bool failed_ = false;
  std::string failure_;
};

}  // namespace walbust
