#include "walbust/core/duration.h"

#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <utility>

namespace walbust {
namespace {

using Unit = std::pair<std::string_view, std::int64_t>;  // suffix, milliseconds

constexpr std::array<Unit, 4> kConfigUnits{
    {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}}};
constexpr std::array<Unit, 6> kPostgresUnits{
    {{"", 1}, {"ms", 1}, {"s", 1000}, {"min", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}}};

template <std::size_t N>
std::optional<std::int64_t> scale_of(std::string_view unit, const std::array<Unit, N>& units) {
  for (const auto& [suffix, scale] : units) {
    if (unit == suffix) return scale;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text,
                                                        DurationSyntax syntax) {
  if (text == "0") return std::chrono::milliseconds{0};
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return std::nullopt;
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, value);
  if (ec != std::errc{} || end != text.data() + digits) return std::nullopt;
  const std::string_view unit = text.substr(digits);
  const auto scale = syntax == DurationSyntax::Config ? scale_of(unit, kConfigUnits)
                                                      : scale_of(unit, kPostgresUnits);
  if (!scale || value > std::numeric_limits<std::int64_t>::max() / *scale) return std::nullopt;
  return std::chrono::milliseconds{value * *scale};
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace walbust
