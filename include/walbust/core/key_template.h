#pragma once
// Key templates (README "Writing rules"): "post_detail_{id}", "{old.slug|lower}",
// "{{literal}}". Compiled once when rules load into literal parts and placeholders, then
// rendered for every matching row image without reparsing.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "walbust/core/change.h"

namespace walbust {

// Which row image a placeholder reads. Current is the image being rendered: plain {col}
// is rendered once for the new and once for the old row of an update.
enum class RowImage : std::uint8_t { Current, Old, New };

// Filters apply left to right. lower/upper change ASCII letters only (bytes >= 0x80 are
// left alone, so UTF-8 is never corrupted); md5 gives lower-case hex; python spells
// booleans and NULL as Python's str() does.
enum class KeyFilter : std::uint8_t { Lower, Upper, Md5, Python };

struct Placeholder {
  RowImage image = RowImage::Current;
  std::string column;
  std::vector<KeyFilter> filters;
  std::size_t offset = 0;  // of the '{' in the template text
};

struct TemplateError {
  std::size_t offset = 0;  // byte offset into the template text
  std::string message;
};

// The rows of one change a template renders against. Pointers, not copies: rendering
// runs for every matching change.
struct RenderRows {
  const Relation* relation = nullptr;
  const Row* old_row = nullptr;      // nullptr: no previous row was sent
  const Row* new_row = nullptr;      // nullptr: no new row (delete, truncate)
  RowImage current = RowImage::New;  // the image plain {col} reads (Old or New)
};

struct RenderOptions {
  const std::string* null_literal = nullptr;  // nullptr: a NULL value skips the rendering
  bool escape_glob = false;                   // escape * ? [ ] \ inside values (delete_pattern)
};

// Why a rendering was skipped (views into static text and the template itself: valid
// while the template lives). reason is one of "null", "unchanged_toast",
// "old_row_unavailable", "unknown_column"; column names the placeholder's column.
struct TemplateSkip {
  std::string_view reason;
  std::string_view column;
};

class KeyTemplate {
 public:
  // Compiles `text`. On failure returns nullopt and appends every problem found.
  [[nodiscard]] static std::optional<KeyTemplate> compile(std::string_view text,
                                                          std::vector<TemplateError>& errors);

  [[nodiscard]] const std::string& text() const { return text_; }
  [[nodiscard]] const std::vector<Placeholder>& placeholders() const { return placeholders_; }
  [[nodiscard]] bool has_placeholders() const { return !placeholders_.empty(); }
  [[nodiscard]] bool uses(RowImage image) const;

  // Appends the key to `out`. Returns false (with `skip` set, `out` partly written) when a
  // value cannot be rendered. Never throws on row content.
  [[nodiscard]] bool render(const RenderRows& rows, const RenderOptions& options, std::string& out,
                            TemplateSkip& skip) const;

  // The template as a Redis glob: every placeholder becomes '*'. Literal text is
  // glob-escaped when escape_literals (a literal key part), else kept (a user's glob).
  [[nodiscard]] std::string as_pattern(bool escape_literals) const;

 private:
  struct Part {
    std::string literal;  // used when placeholder < 0
    int placeholder = -1;
  };

  std::string text_;
  std::vector<Part> parts_;
  std::vector<Placeholder> placeholders_;
};

// Appends `text` with Redis glob characters (* ? [ ] \) backslash-escaped.
void append_glob_escaped(std::string& out, std::string_view text);

}  // namespace walbust
