#include "walbust/core/redelete_queue.h"

namespace walbust {

void RedeleteQueue::push(std::string key, Clock::time_point due) {
  if (capacity_ == 0) {
    ++dropped_;
    return;
  }
  if (heap_.size() >= capacity_) {
    // Drop the entry due first: it is the oldest, and a second delete is best effort.
    heap_.pop();
    ++dropped_;
  }
  heap_.push(Entry{due, next_seq_++, std::move(key)});
}

void RedeleteQueue::pop_due(Clock::time_point now, std::size_t max, std::vector<std::string>& out) {
  while (!heap_.empty() && max > 0 && heap_.top().due <= now) {
    // priority_queue::top is const, so the key is copied; second deletes are rare.
    out.push_back(heap_.top().key);
    heap_.pop();
    --max;
  }
}

void RedeleteQueue::requeue(std::vector<std::string>& keys, Clock::time_point due) {
  for (auto& k : keys) push(std::move(k), due);
  keys.clear();
}

RedeleteQueue::Clock::time_point RedeleteQueue::next_due() const {
  return heap_.empty() ? Clock::time_point::max() : heap_.top().due;
}

}  // namespace walbust
