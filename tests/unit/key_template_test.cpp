#include "walbust/core/key_template.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

Value text(std::string s) { return Value{Value::Kind::Text, std::move(s)}; }
Value null() { return Value{Value::Kind::Null, {}}; }
Value unchanged() { return Value{Value::Kind::Unchanged, {}}; }
Value absent() { return Value{Value::Kind::Absent, {}}; }

KeyTemplate compiled(std::string_view text) {
  std::vector<TemplateError> errors;
  auto t = KeyTemplate::compile(text, errors);
  EXPECT_TRUE(t.has_value()) << text << ": " << (errors.empty() ? "" : errors[0].message);
  return t ? std::move(*t) : KeyTemplate{};
}

struct CompileErrorCase {
  std::string text;
  std::size_t offset;
  std::string message;
};

class TemplateCompileError : public ::testing::TestWithParam<CompileErrorCase> {};

TEST_P(TemplateCompileError, ReportsOffsetAndMessage) {
  const auto& c = GetParam();
  std::vector<TemplateError> errors;
  EXPECT_FALSE(KeyTemplate::compile(c.text, errors).has_value());
  ASSERT_EQ(errors.size(), 1u) << c.text;
  EXPECT_EQ(errors[0].offset, c.offset) << c.text;
  EXPECT_EQ(errors[0].message, c.message) << c.text;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TemplateCompileError,
    ::testing::Values(
        CompileErrorCase{"post_{id", 5, "unclosed '{' (write '{{' for a literal brace)"},
        CompileErrorCase{"post_{a{id}", 5, "unclosed '{' (write '{{' for a literal brace)"},
        CompileErrorCase{"post_id}", 7, "unmatched '}' (write '}}' for a literal brace)"},
        CompileErrorCase{"post_{}", 5, "empty placeholder '{}'"},
        CompileErrorCase{"x{old.}", 6, "missing column name after 'old.'"},
        CompileErrorCase{"x{new.|lower}", 6, "missing column name after 'new.'"},
        CompileErrorCase{"x{|lower}", 2, "missing column name in placeholder"},
        CompileErrorCase{"x{prev.id}", 2, "unknown row image 'prev.' (expected 'old.' or 'new.')"},
        CompileErrorCase{"x{post id}", 2, "invalid column name 'post id'"},
        CompileErrorCase{"x{1st}", 2, "invalid column name '1st'"},
        CompileErrorCase{"x{id|lowr}", 5,
                         "unknown filter 'lowr' (expected lower, upper, md5 or python)"},
        CompileErrorCase{"x{id|}", 4, "empty filter after '|'"},
        CompileErrorCase{"x{id||md5}", 4, "empty filter after '|'"}));

TEST(KeyTemplate, ReportsEveryErrorInOneTemplate) {
  std::vector<TemplateError> errors;
  EXPECT_FALSE(KeyTemplate::compile("{}_{id|x}_}", errors).has_value());
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].offset, 0u);
  EXPECT_EQ(errors[1].offset, 7u);
  EXPECT_EQ(errors[2].offset, 10u);
}

TEST(KeyTemplate, ParsesPlaceholdersImagesAndFilters) {
  const KeyTemplate t = compiled("a{{b}}_{id}_{old.slug|lower|md5}_{new.name|python}");
  ASSERT_EQ(t.placeholders().size(), 3u);
  EXPECT_EQ(t.placeholders()[0].image, RowImage::Current);
  EXPECT_EQ(t.placeholders()[1].image, RowImage::Old);
  EXPECT_EQ(t.placeholders()[1].column, "slug");
  EXPECT_EQ(t.placeholders()[1].filters,
            (std::vector<KeyFilter>{KeyFilter::Lower, KeyFilter::Md5}));
  EXPECT_EQ(t.placeholders()[2].image, RowImage::New);
  EXPECT_TRUE(t.uses(RowImage::Old));
  EXPECT_EQ(t.as_pattern(false), "a{b}_*_*_*");
  EXPECT_FALSE(compiled("home_page_posts").has_placeholders());
  EXPECT_TRUE(compiled("{_weird_Col9$}").has_placeholders());
}

TEST(KeyTemplate, PatternEscapesLiteralTextOnlyWhenAsked) {
  const KeyTemplate t = compiled("a*[x]?\\_{id}");
  EXPECT_EQ(t.as_pattern(false), "a*[x]?\\_*");
  EXPECT_EQ(t.as_pattern(true), "a\\*\\[x\\]\\?\\\\_*");
}

// A relation and rows to render against.
struct Fixture {
  Relation rel;
  Row old_row;
  Row new_row;
  Fixture() {
    rel.schema = "public";
    rel.name = "t";
    for (const auto* name : {"id", "slug", "flag", "body", "category_id"}) {
      rel.columns.push_back(Column{name, 25});
    }
    rel.columns[2].type_oid = 16;  // bool
    old_row = {text("7"), text("Old-Slug"), text("f"), text("long body"), text("3")};
    new_row = {text("7"), text("New-Slug"), text("t"), unchanged(), null()};
  }
  RenderRows rows(RowImage current, bool with_old = true) const {
    return RenderRows{&rel, with_old ? &old_row : nullptr, &new_row, current};
  }
};

struct RenderCase {
  std::string name;
  std::string tmpl;
  RowImage current;
  std::string expected;  // when ok
  std::string reason;    // "" when ok
  std::string column;
};

class TemplateRender : public ::testing::TestWithParam<RenderCase> {};

TEST_P(TemplateRender, RendersOrSkips) {
  const auto& c = GetParam();
  const Fixture f;
  const KeyTemplate t = compiled(c.tmpl);
  std::string out;
  TemplateSkip skip;
  const bool ok = t.render(f.rows(c.current), RenderOptions{}, out, skip);
  if (c.reason.empty()) {
    ASSERT_TRUE(ok) << c.name << ": " << skip.reason;
    EXPECT_EQ(out, c.expected) << c.name;
  } else {
    ASSERT_FALSE(ok) << c.name << ": " << out;
    EXPECT_EQ(skip.reason, c.reason) << c.name;
    EXPECT_EQ(skip.column, c.column) << c.name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TemplateRender,
    ::testing::Values(
        RenderCase{"literal", "home_page_posts", RowImage::New, "home_page_posts", "", ""},
        RenderCase{"braces", "{{x}}_{id}", RowImage::New, "{x}_7", "", ""},
        RenderCase{"new image", "p_{slug}", RowImage::New, "p_New-Slug", "", ""},
        RenderCase{"old image", "p_{slug}", RowImage::Old, "p_Old-Slug", "", ""},
        RenderCase{"pinned old", "{new.slug}>{old.slug}", RowImage::New, "New-Slug>Old-Slug", "",
                   ""},
        RenderCase{"lower", "{slug|lower}", RowImage::New, "new-slug", "", ""},
        RenderCase{"upper", "{slug|upper}", RowImage::Old, "OLD-SLUG", "", ""},
        RenderCase{"md5", "{id|md5}", RowImage::New, "8f14e45fceea167a5a36dedd4bea2543", "", ""},
        RenderCase{"chain", "{slug|lower|md5}", RowImage::New, "55edc66bbf856e27d534d6b3606cb919",
                   "", ""},
        RenderCase{"python bool", "{flag|python}", RowImage::New, "True", "", ""},
        RenderCase{"python bool old", "{flag|python}", RowImage::Old, "False", "", ""},
        RenderCase{"python text untouched", "{slug|python}", RowImage::New, "New-Slug", "", ""},
        RenderCase{"python null", "{category_id|python}", RowImage::New, "None", "", ""},
        RenderCase{"toast from old", "b_{body}", RowImage::New, "b_long body", "", ""},
        RenderCase{"null skips", "c_{category_id}", RowImage::New, "", "null", "category_id"},
        RenderCase{"null filtered skips", "c_{category_id|md5}", RowImage::New, "", "null",
                   "category_id"},
        RenderCase{"unknown column", "x_{nope}", RowImage::New, "", "unknown_column", "nope"}));

TEST(KeyTemplate, NullLiteralRendersAndGoesThroughFilters) {
  const Fixture f;
  const std::string literal = "None";
  std::string out;
  TemplateSkip skip;
  ASSERT_TRUE(
      compiled("c_{category_id}").render(f.rows(RowImage::New), {&literal, false}, out, skip));
  EXPECT_EQ(out, "c_None");
  out.clear();
  ASSERT_TRUE(
      compiled("{category_id|lower}").render(f.rows(RowImage::New), {&literal, false}, out, skip));
  EXPECT_EQ(out, "none");
  out.clear();
  const std::string other = "null";
  ASSERT_TRUE(
      compiled("{category_id|python}").render(f.rows(RowImage::New), {&other, false}, out, skip));
  EXPECT_EQ(out, "None");  // python always spells NULL as None
}

TEST(KeyTemplate, UnchangedToastWithoutOldValueSkips) {
  const Fixture f;
  std::string out;
  TemplateSkip skip;
  const KeyTemplate t = compiled("b_{body}");  // skip.column points into the template
  EXPECT_FALSE(t.render(f.rows(RowImage::New, false), {}, out, skip));
  EXPECT_EQ(skip.reason, "unchanged_toast");
  EXPECT_EQ(skip.column, "body");
}

TEST(KeyTemplate, AbsentOldValueSkips) {
  Fixture f;
  f.old_row = {text("7"), absent(), absent(), absent(), absent()};  // a 'K' old tuple
  std::string out;
  TemplateSkip skip;
  EXPECT_TRUE(compiled("p_{id}").render(f.rows(RowImage::Old), {}, out, skip));
  EXPECT_EQ(out, "p_7");
  out.clear();
  EXPECT_FALSE(compiled("s_{slug}").render(f.rows(RowImage::Old), {}, out, skip));
  EXPECT_EQ(skip.reason, "old_row_unavailable");
  const KeyTemplate pinned = compiled("s_{old.slug}");
  EXPECT_FALSE(pinned.render(f.rows(RowImage::New, false), {}, out, skip));
  EXPECT_EQ(skip.reason, "old_row_unavailable");
  EXPECT_EQ(skip.column, "slug");
}

TEST(KeyTemplate, EscapesGlobCharactersInValuesOnly) {
  Fixture f;
  f.new_row[1] = text("a*b?c[d]e\\f");
  std::string out;
  TemplateSkip skip;
  ASSERT_TRUE(compiled("u:{slug}:*").render(f.rows(RowImage::New), {nullptr, true}, out, skip));
  EXPECT_EQ(out, "u:a\\*b\\?c\\[d\\]e\\\\f:*");
}

TEST(KeyTemplate, RendersArbitraryBytesVerbatim) {
  Fixture f;
  f.new_row[1] = text(std::string("line\nbreak \"quoted\" 'x' \xc3\xa9\0nul", 28));
  f.new_row[3] = text(std::string(1 << 20, 'x'));
  std::string out;
  TemplateSkip skip;
  ASSERT_TRUE(compiled("{slug}|{body}").render(f.rows(RowImage::New), {}, out, skip));
  EXPECT_EQ(out.size(), 28u + 1u + (1u << 20));
  out.clear();
  ASSERT_TRUE(compiled("{slug|upper}").render(f.rows(RowImage::New), {}, out, skip));
  EXPECT_EQ(out.substr(0, 10), "LINE\nBREAK");
  EXPECT_EQ(out.substr(24, 2), "\xc3\xa9");  // non-ASCII bytes untouched
}

TEST(KeyTemplate, ShortRowsAreAbsentNotOutOfBounds) {
  Fixture f;
  f.old_row.resize(1);
  std::string out;
  TemplateSkip skip;
  EXPECT_FALSE(compiled("{category_id}").render(f.rows(RowImage::Old), {}, out, skip));
  EXPECT_EQ(skip.reason, "old_row_unavailable");
}

}  // namespace
}  // namespace walbust
