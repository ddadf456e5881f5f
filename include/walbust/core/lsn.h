#pragma once
// PostgreSQL log sequence numbers: 64-bit WAL positions written as "XXXXXXXX/XXXXXXXX".
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace walbust {

using Lsn = std::uint64_t;
inline constexpr Lsn kInvalidLsn = 0;

// Parses "16/B374D848" (hex, case-insensitive, each half at most 8 digits).
[[nodiscard]] std::optional<Lsn> parse_lsn(std::string_view text);
// Formats as PostgreSQL does: upper-case hex, no leading zeros, e.g. "0/1A2B3C8".
[[nodiscard]] std::string format_lsn(Lsn lsn);

}  // namespace walbust
