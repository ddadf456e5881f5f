#pragma once
// Keys as a person reads them in text output (dry-run, audit): one key stays on one line and
// two different keys never print alike. Valid UTF-8 is kept as it is; control bytes, a
// backslash and bytes that are not UTF-8 are escaped (\n, \r, \t, \\, \xNN). JSON output
// does not use this: it carries the key itself.
#include <string>
#include <string_view>

namespace walbust {

[[nodiscard]] std::string escape_key_text(std::string_view key);

}  // namespace walbust
