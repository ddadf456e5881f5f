#include "walbust/core/rule_cases.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

const char* kRules = R"(version: 1
rules:
  - name: post-pages
    table: blog_post
    ignore_changes: [view_count]
    delete: ["post_detail_{id}", "category_posts_{category_id}"]
  - name: patterns
    table: app.users
    delete_pattern: ["user:{id}:*"]
    bump_version: ["user_version_{id}"]
)";

RuleSet rules() {
  Diagnostics diags;
  RuleSet set = RuleSet::load({{"rules.yaml", kRules}}, diags);
  EXPECT_TRUE(diags.empty()) << diags.format();
  return set;
}

struct Outcome {
  std::vector<CaseResult> results;
  std::string diags;
};

Outcome run(const std::string& yaml) {
  Diagnostics diags;
  auto results = run_rule_cases(rules(), {"cases.yaml", yaml}, diags);
  return {std::move(results), diags.format()};
}

struct Expectation {
  std::string name;
  std::string yaml;  // one case, without the "cases:" header
  bool passed;
  std::string difference;
};

class RuleCase : public ::testing::TestWithParam<Expectation> {};

TEST_P(RuleCase, PassesOrExplainsTheDifference) {
  const auto& e = GetParam();
  const Outcome o = run("cases:\n" + e.yaml);
  EXPECT_EQ(o.diags, "") << e.name;
  ASSERT_EQ(o.results.size(), 1u) << e.name;
  EXPECT_EQ(o.results[0].file, "cases.yaml");
  EXPECT_EQ(o.results[0].passed, e.passed) << e.name;
  EXPECT_EQ(o.results[0].difference, e.difference) << e.name;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RuleCase,
    ::testing::Values(
        Expectation{"both categories", R"(  - name: move
    table: blog_post
    op: update
    old: {id: 7, category_id: 3, view_count: 1}
    new: {id: 7, category_id: 4, view_count: 1}
    expect: {delete: [post_detail_7, category_posts_3, category_posts_4]}
)",
                    true, ""},
        Expectation{"missing and unexpected", R"(  - name: move
    table: blog_post
    op: update
    old: {id: 7, category_id: 3, view_count: 1}
    new: {id: 7, category_id: 4, view_count: 1}
    expect: {delete: [post_detail_7, category_posts_3, category_posts_9, category_posts_8]}
)",
                    false,
                    "delete: missing [category_posts_8, category_posts_9]; unexpected "
                    "[category_posts_4]"},
        Expectation{"unlisted kind must produce nothing", R"(  - name: user
    table: app.users
    op: insert
    new: {id: 5}
    expect: {delete_pattern: ["user:5:*"]}
)",
                    false, "bump_version: unexpected [user_version_5]"},
        Expectation{"several kinds", R"(  - name: user
    table: app.users
    op: delete
    old: {id: 5}
    expect: {delete: [x], bump_version: [user_version_5]}
)",
                    false, "delete: missing [x]; delete_pattern: unexpected [user:5:*]"},
        Expectation{"view count only", R"(  - name: views
    table: blog_post
    op: update
    old: {id: 7, category_id: 3, view_count: 1}
    new: {id: 7, category_id: 3, view_count: 2}
    expect: {}
)",
                    true, ""},
        Expectation{"column left out of new is unchanged", R"(  - name: toast
    table: blog_post
    op: update
    old: {id: 7, category_id: 3, view_count: 1}
    new: {id: 7, view_count: 2}
    expect: {delete: []}
)",
                    true, ""},
        Expectation{"column left out of old is not known", R"(  - name: k tuple
    table: blog_post
    op: update
    old: {id: 7}
    new: {id: 7, category_id: 3, view_count: 2}
    expect: {delete: [post_detail_7, category_posts_3]}
)",
                    true, ""},
        Expectation{"update without old row", R"(  - name: no old
    table: blog_post
    op: update
    new: {id: 7, category_id: 3, view_count: 2}
    expect: {delete: [post_detail_7, category_posts_3]}
)",
                    true, ""},
        Expectation{"null renders nothing", R"(  - name: null value
    table: blog_post
    op: insert
    new: {id: 7, category_id: null}
    expect: {delete: [post_detail_7]}
)",
                    true, ""},
        Expectation{"truncate", R"(  - name: truncate
    table: app.users
    op: truncate
    lsn: "0/16B3748"
    expect: {delete_pattern: ["user:*:*", "user_version_*"]}
)",
                    true, ""},
        Expectation{"unwatched table", R"(  - name: other
    table: other
    op: insert
    new: {id: 1}
    expect: {}
)",
                    true, ""}));

TEST(RuleCases, ProblemsInTheFileAreDiagnosticsAndSkipOnlyTheirCase) {
  const Outcome o = run(R"(cases:
  - name: good
    table: blog_post
    op: insert
    new: {id: 1}
    expect: {delete: [post_detail_1]}
  - name: typo
    tabel: blog_post
    op: insert
    new: {id: 1}
    expect: {delete: []}
  - name: bad op
    table: blog_post
    op: upsert
    new: {id: 1}
    expect: {deletes: []}
  - name: insert with old
    table: blog_post
    op: insert
    old: {id: 1}
    new: {id: [1]}
    lsn: "x"
  - name: truncate with rows
    table: t
    op: truncate
    new: {id: 1}
    expect: {delete: [a, [b]]}
  - just a string
)");
  ASSERT_EQ(o.results.size(), 1u);
  EXPECT_TRUE(o.results[0].passed);
  EXPECT_EQ(o.diags,
            "cases.yaml:8:5: error: unknown key 'tabel' (did you mean 'table'?)\n"
            "cases.yaml:7:5: error: missing required key 'table'\n"
            "cases.yaml:14:9: error: unknown op 'upsert' (expected insert, update, delete or "
            "truncate)\n"
            "cases.yaml:16:14: error: unknown key 'deletes' (did you mean 'delete'?)\n"
            "cases.yaml:21:15: error: column values must be scalars\n"
            "cases.yaml:20:10: error: an insert has no 'old' row\n"
            "cases.yaml:22:10: error: invalid lsn (expected e.g. \"0/16B3748\")\n"
            "cases.yaml:17:5: error: missing required key 'expect'\n"
            "cases.yaml:26:10: error: a truncate has no rows\n"
            "cases.yaml:27:26: error: 'delete' must be a list of keys\n"
            "cases.yaml:28:5: error: a case must be a map\n");
}

TEST(RuleCases, FileLevelProblems) {
  EXPECT_EQ(run("cases: [\n").diags, "cases.yaml:2:1: error: end of sequence flow not found\n");
  EXPECT_EQ(run("- a\n").diags,
            "cases.yaml:1:1: error: a cases file must be a map with a 'cases:' list\n");
  EXPECT_EQ(run("case: []\n").diags,
            "cases.yaml:1:1: error: unknown key 'case' (did you mean 'cases'?)\n"
            "cases.yaml:1:1: error: a cases file must have a 'cases:' list\n");
  EXPECT_EQ(run("cases: {}\n").diags,
            "cases.yaml:1:8: error: a cases file must have a 'cases:' list\n");
  EXPECT_TRUE(run("cases: []\n").results.empty());
}

TEST(RuleCases, RequiresTheImagesAnOperationCarries) {
  const Outcome o = run(R"(cases:
  - name: update without new
    table: t
    op: update
    old: {id: 1}
    expect: {}
  - name: delete without old
    table: t
    op: delete
    expect: {}
  - name: delete with new
    table: t
    op: delete
    old: {id: 1}
    new: {id: 1}
    expect: {}
)");
  EXPECT_TRUE(o.results.empty());
  EXPECT_EQ(o.diags,
            "cases.yaml:2:5: error: an update needs a 'new' row\n"
            "cases.yaml:7:5: error: a delete needs an 'old' row\n"
            "cases.yaml:15:10: error: a delete has no 'new' row\n");
}

}  // namespace
}  // namespace walbust
