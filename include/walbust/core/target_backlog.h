#pragma once
// What the stream handed to one Redis target and the target has not taken yet: actions
// and commit markers, in the order they were read. The target takes them in batches of at
// most max_keys actions, every commit marker between them included, so a batch always
// ends where the next can start without reordering anything.
//
// The backlog has no bound of its own: the stream stops adding once full() says so and
// waits for the target, so memory never follows the replication backlog or the size of
// one transaction. Single-threaded: the stream and the target's fiber share one thread.
#include <cstddef>
#include <cstdint>
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

class TargetBacklog {
 public:
  explicit TargetBacklog(std::size_t capacity);

  // Moves every item of `items` to the back (`items` is then empty).
  void push(std::vector<QueueItem>& items);
  // Appends items from the front to `out` until `max_actions` Action items were taken
  // (Commit items do not count). Returns the number of items taken.
  std::size_t take(std::vector<QueueItem>& out, std::size_t max_actions);

  [[nodiscard]] std::size_t size() const { return items_.size() - head_; }
  [[nodiscard]] bool empty() const { return size() == 0; }
  // At or over capacity: the stream waits before handing over more.
  [[nodiscard]] bool full() const { return size() >= capacity_; }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }

 private:
  const std::size_t capacity_;
  // A vector consumed from head_ rather than a deque: a deque allocates a block for every
  // few of these large items, a vector reuses its storage once it has grown.
  std::vector<QueueItem> items_;
  std::size_t head_ = 0;
};

}  // namespace walbust
