#pragma once
// The bounded hand-off between the source thread (decode, match, render) and a sink
// thread (Redis). Bounded in items, so a slow Redis slows the replication read and memory
// never grows with the backlog or with the size of one transaction.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "walbust/core/lsn.h"
#include "walbust/core/rules.h"

namespace walbust {

struct QueueItem {
  enum class Kind : std::uint8_t { Action, Commit };
  Kind kind = Kind::Action;
  Action action;                    // Kind::Action
  std::uint64_t ticket = 0;         // Kind::Commit: AckTracker ticket
  Lsn end_lsn = kInvalidLsn;        // Kind::Commit
  std::int64_t commit_time_us = 0;  // Kind::Commit: PostgreSQL epoch microseconds
  // Action: a delete repeated after read replicas replayed its transaction. Commit: every
  // repeated delete up to `ticket` was handed over (confirmed with confirm_replayed).
  bool after_replay = false;
};

class ActionQueue {
 public:
  using Clock = std::chrono::steady_clock;

  explicit ActionQueue(std::size_t capacity);

  // Moves items from the front of `items` into the queue, waiting for room until
  // `deadline`. Returns true when all were moved (then `items` is empty). An empty queue
  // always accepts a whole chunk, so a chunk larger than the capacity cannot deadlock.
  [[nodiscard]] bool push(std::vector<QueueItem>& items, Clock::time_point deadline);

  enum class PopResult { Items, Timeout, Closed };
  // Waits until there is at least one item, the deadline passes, or the queue is closed
  // and drained. Appends items to `out` until `max_actions` Action items were taken
  // (Commit items do not count).
  [[nodiscard]] PopResult pop(std::vector<QueueItem>& out, std::size_t max_actions,
                              Clock::time_point deadline);

  // Like pop, but leaves the items in the queue: Items once there is one, Timeout, or
  // Closed once closed and drained. With a single consumer, what it then pops is there.
  [[nodiscard]] PopResult wait(Clock::time_point deadline);

  // No more pushes; the consumer drains what is left, then pop returns Closed.
  void close();
  [[nodiscard]] std::size_t size() const;
  [[nodiscard]] bool empty() const { return size() == 0; }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }

 private:
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  // A vector consumed from head_ rather than a deque: a deque allocates a block for every
  // few of these large items, a vector reuses its storage once it has grown.
  std::vector<QueueItem> items_;
  std::size_t head_ = 0;
  bool closed_ = false;
};

}  // namespace walbust
