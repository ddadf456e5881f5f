#include "walbust/core/read_window.h"

#include <algorithm>

namespace walbust {

void ReadWindow::commit(std::int64_t commit_time_us) {
  if (seen_commit_) {
    const std::int64_t gap =
        std::clamp<std::int64_t>(commit_time_us - last_commit_us_, 0, kLongestGapUs);
    gap_us_ += (gap - gap_us_) / kWeight;
  }
  last_commit_us_ = seen_commit_ ? std::max(last_commit_us_, commit_time_us) : commit_time_us;
  seen_commit_ = true;
}

ReadWindow::Clock::time_point ReadWindow::until() const {
  return dense() ? last_frame_ + kLength : Clock::time_point::min();
}

}  // namespace walbust
