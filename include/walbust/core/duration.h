#pragma once
// Durations as walbust reads them: the one parser for configuration and rules files
// ("250ms", "10s", "5m", "1h") and for PostgreSQL's own settings as `SHOW` prints them
// ("500ms", "5s", "1min", "0"; a bare number is in the setting's unit, milliseconds here).
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace walbust {

enum class DurationSyntax {
  Config,           // ms, s, m, h; a unit is required except for "0"
  PostgresSetting,  // ms, s, min, h, d; a bare number is milliseconds
};

// A non-negative integer followed by a unit of `syntax`. Rejects negative values,
// fractions, unknown or missing units and overflow.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_duration(
    std::string_view text, DurationSyntax syntax = DurationSyntax::Config);
// The largest exact unit of the configuration syntax: 90000ms → "90s", 120000ms → "2m".
[[nodiscard]] std::string format_duration(std::chrono::milliseconds d);

}  // namespace walbust
