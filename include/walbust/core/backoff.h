#pragma once
// Capped exponential backoff with full jitter: the n-th retry waits a random time in
// [base/2, base] where base doubles from `initial` up to `cap`. Randomness is passed in,
// so the sequence is testable.
#include <chrono>

namespace walbust {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds cap)
      : initial_(initial), cap_(cap) {}

  // `random01` in [0, 1).
  [[nodiscard]] std::chrono::milliseconds next(double random01);
  void reset() { attempt_ = 0; }
  [[nodiscard]] int attempts() const { return attempt_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds cap_;
  int attempt_ = 0;
};

}  // namespace walbust
