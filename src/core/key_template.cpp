#include "walbust/core/key_template.h"

#include <array>

#include "walbust/core/django_keys.h"

namespace walbust {
namespace {

constexpr std::uint32_t kBoolTypeOid = 16;

bool is_identifier_start(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

bool is_identifier_char(unsigned char c) {
  return is_identifier_start(c) || (c >= '0' && c <= '9') || c == '$';
}

// PostgreSQL's unquoted identifier syntax (letters incl. non-ASCII, digits, _, $).
bool is_identifier(std::string_view name) {
  if (name.empty() || !is_identifier_start(static_cast<unsigned char>(name[0]))) return false;
  for (const char c : name) {
    if (!is_identifier_char(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::optional<KeyFilter> parse_filter(std::string_view name) {
  if (name == "lower") return KeyFilter::Lower;
  if (name == "upper") return KeyFilter::Upper;
  if (name == "md5") return KeyFilter::Md5;
  if (name == "python") return KeyFilter::Python;
  return std::nullopt;
}

// Parses the text between '{' and '}' (starting at `offset` in the template).
std::optional<Placeholder> parse_placeholder(std::string_view body, std::size_t offset,
                                             std::vector<TemplateError>& errors) {
  const std::size_t brace = offset - 1;
  if (body.empty()) {
    errors.push_back({brace, "empty placeholder '{}'"});
    return std::nullopt;
  }
  Placeholder p;
  p.offset = brace;
  bool ok = true;
  const std::size_t bar = body.find('|');
  std::string_view spec = body.substr(0, bar);
  std::size_t spec_offset = offset;
  for (const auto& [prefix, image] : {std::pair{std::string_view("old."), RowImage::Old},
                                      std::pair{std::string_view("new."), RowImage::New}}) {
    if (spec.substr(0, prefix.size()) == prefix) {
      p.image = image;
      spec.remove_prefix(prefix.size());
      spec_offset += prefix.size();
      if (spec.empty()) {
        errors.push_back({spec_offset, "missing column name after '" + std::string(prefix) + "'"});
        ok = false;
      }
      break;
    }
  }
  if (ok && spec.empty()) {
    errors.push_back({spec_offset, "missing column name in placeholder"});
    ok = false;
  } else if (ok && p.image == RowImage::Current && spec.find('.') != std::string_view::npos) {
    errors.push_back({spec_offset, "unknown row image '" +
                                       std::string(spec.substr(0, spec.find('.'))) +
                                       ".' (expected 'old.' or 'new.')"});
    ok = false;
  } else if (ok && !is_identifier(spec)) {
    errors.push_back({spec_offset, "invalid column name '" + std::string(spec) + "'"});
    ok = false;
  }
  p.column = std::string(spec);

  std::size_t pos = bar;
  while (pos != std::string_view::npos) {
    const std::size_t next = body.find('|', pos + 1);
    const std::string_view name =
        body.substr(pos + 1, next == std::string_view::npos ? next : next - pos - 1);
    if (name.empty()) {
      errors.push_back({offset + pos, "empty filter after '|'"});
      ok = false;
    } else if (const auto filter = parse_filter(name)) {
      p.filters.push_back(*filter);
    } else {
      errors.push_back({offset + pos + 1, "unknown filter '" + std::string(name) +
                                              "' (expected lower, upper, md5 or python)"});
      ok = false;
    }
    pos = next;
  }
  if (!ok) return std::nullopt;
  return p;
}

// The value a placeholder reads, before filters: text, NULL, or a reason to skip.
struct Resolved {
  const std::string* text = nullptr;  // nullptr with reason empty: NULL
  std::string_view reason;
};

Resolved value_of(const Row* row, std::size_t index) {
  if (row == nullptr || index >= row->size()) return {nullptr, "old_row_unavailable"};
  const Value& v = (*row)[index];
  switch (v.kind) {
    case Value::Kind::Text:
      return {&v.text, {}};
    case Value::Kind::Null:
      return {nullptr, {}};
    case Value::Kind::Unchanged:
      return {nullptr, "unchanged_toast"};
    case Value::Kind::Absent:
      break;
  }
  return {nullptr, "old_row_unavailable"};
}

Resolved resolve(const RenderRows& rows, RowImage image, std::size_t index) {
  if (image == RowImage::Current) image = rows.current;
  if (image == RowImage::Old) return value_of(rows.old_row, index);
  // A new tuple omits unchanged TOASTed values ('u'); the old row (FULL identity) has them.
  const bool sent = rows.new_row != nullptr && index < rows.new_row->size() &&
                    ((*rows.new_row)[index].kind == Value::Kind::Text ||
                     (*rows.new_row)[index].kind == Value::Kind::Null);
  if (sent) return value_of(rows.new_row, index);
  const Resolved old = value_of(rows.old_row, index);
  if (old.text != nullptr) return old;
  return {nullptr, "unchanged_toast"};
}

void ascii_case(std::string& s, bool upper) {
  for (char& c : s) {
    if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
}

// Runs the filter chain. `null` is true while the value is SQL NULL; only python turns a
// NULL into text ("None"), the other filters pass NULL through.
void apply_filters(const std::vector<KeyFilter>& filters, bool is_bool, bool& null,
                   std::string& value) {
  for (const KeyFilter f : filters) {
    if (null) {
      if (f == KeyFilter::Python) {
        value = "None";
        null = false;
      }
      continue;
    }
    switch (f) {
      case KeyFilter::Lower:
        ascii_case(value, false);
        break;
      case KeyFilter::Upper:
        ascii_case(value, true);
        break;
      case KeyFilter::Md5:
        value = md5_hex(value);
        break;
      case KeyFilter::Python:
        if (is_bool && value == "t") value = "True";
        if (is_bool && value == "f") value = "False";
        break;
    }
  }
}

void append_value(std::string& out, std::string_view value, bool escape_glob) {
  if (escape_glob) {
    append_glob_escaped(out, value);
  } else {
    out.append(value);
  }
}

}  // namespace

void append_glob_escaped(std::string& out, std::string_view text) {
  for (const char c : text) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
}

std::optional<KeyTemplate> KeyTemplate::compile(std::string_view text,
                                                std::vector<TemplateError>& errors) {
  KeyTemplate t;
  t.text_ = std::string(text);
  const std::size_t errors_before = errors.size();
  std::string literal;
  const auto flush_literal = [&] {
    if (!literal.empty()) t.parts_.push_back({std::move(literal), -1});
    literal.clear();
  };
  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    const bool doubled = i + 1 < text.size() && text[i + 1] == c;
    if ((c == '{' || c == '}') && doubled) {
      literal.push_back(c);
      i += 2;
    } else if (c == '}') {
      errors.push_back({i, "unmatched '}' (write '}}' for a literal brace)"});
      ++i;
    } else if (c == '{') {
      const std::size_t close = text.find_first_of("{}", i + 1);
      if (close == std::string_view::npos || text[close] == '{') {
        errors.push_back({i, "unclosed '{' (write '{{' for a literal brace)"});
        if (close == std::string_view::npos) break;
        i = close;
        continue;
      }
      if (auto p = parse_placeholder(text.substr(i + 1, close - i - 1), i + 1, errors)) {
        flush_literal();
        t.parts_.push_back({{}, static_cast<int>(t.placeholders_.size())});
        t.placeholders_.push_back(std::move(*p));
      }
      i = close + 1;
    } else {
      literal.push_back(c);
      ++i;
    }
  }
  flush_literal();
  if (errors.size() != errors_before) return std::nullopt;
  return t;
}

bool KeyTemplate::uses(RowImage image) const {
  for (const auto& p : placeholders_) {
    if (p.image == image) return true;
  }
  return false;
}

bool KeyTemplate::render(const RenderRows& rows, const RenderOptions& options, std::string& out,
                         TemplateSkip& skip) const {
  std::string filtered;  // only used by placeholders with filters
  for (const Part& part : parts_) {
    if (part.placeholder < 0) {
      out.append(part.literal);
      continue;
    }
    const Placeholder& p = placeholders_[static_cast<std::size_t>(part.placeholder)];
    const int index = rows.relation != nullptr ? rows.relation->column_index(p.column) : -1;
    if (index < 0) {
      skip = {"unknown_column", p.column};
      return false;
    }
    const auto column = static_cast<std::size_t>(index);
    const Resolved r = resolve(rows, p.image, column);
    if (!r.reason.empty()) {
      skip = {r.reason, p.column};
      return false;
    }
    if (r.text != nullptr && p.filters.empty()) {
      append_value(out, *r.text, options.escape_glob);
      continue;
    }
    bool null = r.text == nullptr;
    if (null && options.null_literal != nullptr) {
      // The literal stands for the value, except that python always spells NULL as None.
      bool has_python = false;
      for (const KeyFilter f : p.filters) has_python = has_python || f == KeyFilter::Python;
      if (!has_python) {
        filtered = *options.null_literal;
        null = false;
      }
    } else if (!null) {
      filtered = *r.text;
    }
    const std::uint32_t type = rows.relation->columns[column].type_oid;
    // Synthetic relations (rule tests) carry no types: t/f then count as booleans.
    apply_filters(p.filters, type == kBoolTypeOid || type == 0, null, filtered);
    if (null) {
      skip = {"null", p.column};
      return false;
    }
    append_value(out, filtered, options.escape_glob);
  }
  return true;
}

std::string KeyTemplate::as_pattern(bool escape_literals) const {
  std::string out;
  for (const Part& part : parts_) {
    if (part.placeholder >= 0) {
      out.push_back('*');
    } else if (escape_literals) {
      append_glob_escaped(out, part.literal);
    } else {
      out.append(part.literal);
    }
  }
  return out;
}

}  // namespace walbust
