#pragma once
// Keys waiting for their second delete (`redelete_after`, README "Delivery guarantees"). The second
// delete closes the race in which a reader fetched the old row just before the commit and wrote it
// to the cache just after the first delete. It never holds up acknowledgement (the first delete
// already made the transaction safe to acknowledge), and memory is bounded: past the capacity the
// oldest entries are dropped and counted.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <queue>
#include <string>
#include <vector>

namespace walbust {

class RedeleteQueue {
 public:
  using Clock = std::chrono::steady_clock;

  explicit RedeleteQueue(std::size_t capacity) : capacity_(capacity) {}

  void push(std::string key, Clock::time_point due);
  // Moves up to `max` keys whose time has come into `out`, earliest first.
  void pop_due(Clock::time_point now, std::size_t max, std::vector<std::string>& out);
  // Puts keys back (the second delete failed); they are retried at `due`.
  void requeue(std::vector<std::string>& keys, Clock::time_point due);
  // Time of the earliest entry; Clock::time_point::max() when empty.
  [[nodiscard]] Clock::time_point next_due() const;
  [[nodiscard]] std::size_t size() const { return heap_.size(); }
  [[nodiscard]] std::uint64_t dropped() const { return dropped_; }

 private:
  struct Entry {
    Clock::time_point due;
    std::uint64_t seq;  // FIFO among equal due times, and "oldest" for dropping
    std::string key;
    bool operator>(const Entry& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };
  std::size_t capacity_;
  std::uint64_t next_seq_ = 0;
  std::uint64_t dropped_ = 0;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap_;
};

}  // namespace walbust
