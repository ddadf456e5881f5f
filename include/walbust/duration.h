#pragma once
// Durations as written in configuration: a number with a unit ("250ms", "10s", "5m", "1h").
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace walbust {

// Accepts "0" (no unit needed for zero) and integers with ms, s, m or h. Rejects negative
// values, fractions, missing units and overflow.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
[[nodiscard]] std::string format_duration(std::chrono::milliseconds d);

}  // namespace walbust
