#include "walbust/core/backoff.h"

#include <algorithm>

namespace walbust {

std::chrono::milliseconds Backoff::next(double random01) {
  const int shift = std::min(attempt_, 20);
  ++attempt_;
  const auto base = std::min<long long>(cap_.count(), initial_.count() * (1LL << shift));
  const double r = std::clamp(random01, 0.0, 1.0);
  // Half fixed, half random: never hammers a server, never waits much less than planned.
  return std::chrono::milliseconds(static_cast<long long>(base / 2.0 + r * (base / 2.0)));
}

}  // namespace walbust
