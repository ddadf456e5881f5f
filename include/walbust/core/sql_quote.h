#pragma once
// SQL quoting for text walbust prints or runs (setup scripts, fixes in check --db).
// Independent of a connection, so core code can build SQL that is safe to paste.
#include <string>
#include <string_view>

namespace walbust {

// "name" with embedded double quotes doubled. Always quoted: rule table and column names
// are case-sensitive as written, and unquoted names would be folded to lower case.
[[nodiscard]] std::string sql_identifier(std::string_view name);
// "schema"."name"
[[nodiscard]] std::string sql_qualified(std::string_view schema, std::string_view name);
// 'value' with quotes doubled; E'...' with backslashes doubled when the value has any, so
// the result means the same whatever standard_conforming_strings is.
[[nodiscard]] std::string sql_literal(std::string_view value);
// A dollar-quoted PL/pgSQL body ($walbust$ ... $walbust$) whose tag does not occur in it.
[[nodiscard]] std::string sql_dollar_quoted(std::string_view body);

}  // namespace walbust
