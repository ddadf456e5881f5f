#include "walbust/core/action_queue.h"

namespace walbust {

ActionQueue::ActionQueue(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

bool ActionQueue::push(std::vector<QueueItem>& items, Clock::time_point deadline) {
  if (items.empty()) return true;
  std::unique_lock lock(mu_);
  const bool room = not_full_.wait_until(lock, deadline, [&] {
    const std::size_t queued = items_.size() - head_;
    return queued == 0 || queued + items.size() <= capacity_;
  });
  if (!room) return false;
  for (auto& item : items) items_.push_back(std::move(item));
  items.clear();
  lock.unlock();
  not_empty_.notify_one();
  return true;
}

ActionQueue::PopResult ActionQueue::pop(std::vector<QueueItem>& out, std::size_t max_actions,
                                        Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  const bool ready =
      not_empty_.wait_until(lock, deadline, [&] { return head_ < items_.size() || closed_; });
  if (!ready) return PopResult::Timeout;
  if (head_ == items_.size()) return PopResult::Closed;
  std::size_t actions = 0;
  while (head_ < items_.size()) {
    QueueItem& front = items_[head_];
    if (front.kind == QueueItem::Kind::Action) {
      if (actions == max_actions) break;
      ++actions;
    }
    out.push_back(std::move(front));
    ++head_;
  }
  if (head_ == items_.size()) {
    items_.clear();  // keeps the storage
    head_ = 0;
  } else if (head_ >= 1024 && head_ * 2 >= items_.size()) {
    // Mostly consumed: move the rest to the front instead of growing without end.
    items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  lock.unlock();
  not_full_.notify_one();
  return PopResult::Items;
}

ActionQueue::PopResult ActionQueue::wait(Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  const bool ready =
      not_empty_.wait_until(lock, deadline, [&] { return head_ < items_.size() || closed_; });
  if (!ready) return PopResult::Timeout;
  return head_ == items_.size() ? PopResult::Closed : PopResult::Items;
}

void ActionQueue::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  not_empty_.notify_all();
  not_full_.notify_all();
}

std::size_t ActionQueue::size() const {
  std::lock_guard lock(mu_);
  return items_.size() - head_;
}

}  // namespace walbust
