#pragma once
// Error messages on one line. libpq's messages end with a newline and may carry more lines
// (DETAIL, HINT, indented continuations); every log entry and every line of a report must
// stay one line (journald splits records on newlines).
#include <string>
#include <string_view>

namespace walbust {

// `message` with each line break (and the indentation after it) replaced by "; ", and
// trailing line breaks and blanks dropped.
[[nodiscard]] std::string one_line(std::string_view message);

}  // namespace walbust
