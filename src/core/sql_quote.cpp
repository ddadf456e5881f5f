#include "walbust/core/sql_quote.h"

namespace walbust {

std::string sql_identifier(std::string_view name) {
  std::string out = "\"";
  for (const char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string sql_qualified(std::string_view schema, std::string_view name) {
  return sql_identifier(schema) + "." + sql_identifier(name);
}

std::string sql_literal(std::string_view value) {
  const bool backslash = value.find('\\') != std::string_view::npos;
  std::string out = backslash ? "E'" : "'";
  for (const char c : value) {
    if (c == '\'' || (backslash && c == '\\')) out += c;
    out += c;
  }
  return out + "'";
}

std::string sql_dollar_quoted(std::string_view body) {
  std::string tag = "$walbust$";
  for (int n = 1; body.find(tag) != std::string_view::npos; ++n)
    tag = "$walbust" + std::to_string(n) + "$";
  std::string out = tag;
  out += '\n';
  out += body;
  if (!body.empty() && body.back() != '\n') out += '\n';
  return out + tag;
}

}  // namespace walbust
