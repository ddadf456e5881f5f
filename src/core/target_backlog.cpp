#include "walbust/core/target_backlog.h"

namespace walbust {

TargetBacklog::TargetBacklog(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

void TargetBacklog::push(std::vector<QueueItem>& items) {
  for (auto& item : items) items_.push_back(std::move(item));
  items.clear();
}

std::size_t TargetBacklog::take(std::vector<QueueItem>& out, std::size_t max_actions) {
  std::size_t actions = 0;
  const std::size_t first = head_;
  while (head_ < items_.size()) {
    QueueItem& front = items_[head_];
    if (front.kind == QueueItem::Kind::Action) {
      if (actions == max_actions) break;
      ++actions;
    }
    out.push_back(std::move(front));
    ++head_;
  }
  const std::size_t taken = head_ - first;
  if (head_ == items_.size()) {
    items_.clear();  // keeps the storage
    head_ = 0;
  } else if (head_ >= 1024 && head_ * 2 >= items_.size()) {
    // Mostly consumed: move the rest to the front instead of growing without end.
    items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  return taken;
}

}  // namespace walbust
