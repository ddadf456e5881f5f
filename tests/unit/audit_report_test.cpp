#include "walbust/core/audit_report.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

RuleSet two_rules() {
  Diagnostics diags;
  RuleSet rules = RuleSet::load({{"r.yaml", R"(
version: 1
rules:
  - name: post-pages
    table: blog_post
    delete: ["post_detail_{id}"]
  - name: comments
    table: blog_comment
    delete: ["post_detail_{post_id}"]
)"}},
                                diags);
  EXPECT_TRUE(diags.empty()) << diags.format();
  return rules;
}

TableNeeds table(std::string schema, std::string name) {
  TableNeeds t;
  t.schema = std::move(schema);
  t.name = std::move(name);
  return t;
}

TEST(ComparePublication, ReportsTablesWithoutRulesAndRuleTablesNotPublished) {
  const std::vector<TableNeeds> ruled = {table("public", "blog_post"),
                                         table("public", "blog_comment"), table("shop", "orders")};
  const std::vector<PublishedTable> published = {
      {"public", "blog_post", "public", "blog_post"},
      {"public", "blog_tag", "public", "blog_tag"},
      // Partitions of a rule table count as read by its rule.
      {"shop", "orders_2026", "shop", "orders"},
      {"shop", "orders_2027", "shop", "orders"},
  };
  EXPECT_EQ(compare_publication(ruled, published),
            (std::vector<TableProblem>{{"public.blog_comment", "not in publication"},
                                       {"public.blog_tag", "no rule"}}));
  EXPECT_TRUE(compare_publication({}, {}).empty());
}

FamilyStats family(std::string name, std::uint64_t keys, std::uint64_t no_ttl, bool covered,
                   std::string example, std::vector<std::uint32_t> rules) {
  FamilyStats f;
  f.family = std::move(name);
  f.keys = keys;
  f.no_ttl = no_ttl;
  f.covered = covered;
  f.example = std::move(example);
  f.rules = std::move(rules);
  return f;
}

TEST(AuditJson, PrintsTheContractsObjects) {
  const RuleSet rules = two_rules();
  EXPECT_EQ(
      format_family_json(family("user_profile_*", 1200, 1200, false, "user_profile_17", {}), rules),
      R"({"type":"family","family":"user_profile_*","keys":1200,"no_ttl":1200,)"
      R"("covered":false,"example":"user_profile_17","rules":[]})");
  EXPECT_EQ(format_family_json(family("post_detail_*", 3, 0, true, "post_detail_1", {0, 1}), rules),
            R"({"type":"family","family":"post_detail_*","keys":3,"no_ttl":0,)"
            R"("covered":true,"example":"post_detail_1","rules":["post-pages","comments"]})");
  EXPECT_EQ(format_table_json({"public.blog_tag", "no rule"}),
            R"({"type":"table","table":"public.blog_tag","problem":"no rule"})");
  EXPECT_EQ(format_audit_summary_json({10, 3, 1, 4}),
            R"({"type":"summary","scanned":10,"families":3,"uncovered":1,"uncovered_keys":4})");
}

TEST(AuditJson, ReplacesBytesThatAreNotUtf8) {
  const RuleSet rules = two_rules();
  const std::string key("bin\xff\x00", 5);
  EXPECT_EQ(format_family_json(family(key, 1, 1, false, key, {}), rules),
            "{\"type\":\"family\",\"family\":\"bin\xef\xbf\xbd\\u0000\",\"keys\":1,\"no_ttl\":1,"
            "\"covered\":false,\"example\":\"bin\xef\xbf\xbd\\u0000\",\"rules\":[]}");
}

TEST(AuditSummary, CountsUncoveredFamiliesAndTheirKeys) {
  const std::vector<FamilyStats> families = {family("a_*", 5, 0, false, "a_1", {}),
                                             family("b_*", 2, 0, false, "b_1", {}),
                                             family("c_*", 9, 0, true, "c_1", {0})};
  const AuditSummary s = summarize(families, 16);
  EXPECT_EQ(s.scanned, 16u);
  EXPECT_EQ(s.families, 3u);
  EXPECT_EQ(s.uncovered, 2u);
  EXPECT_EQ(s.uncovered_keys, 7u);
}

TEST(AuditText, ShowsUncoveredFamiliesFirstWithShareAndEscapedExamples) {
  const RuleSet rules = two_rules();
  const std::vector<FamilyStats> families = {
      family("user_profile_*", 30, 30, false, "user_profile_17", {}),
      family(std::string("bin\x01*", 5), 10, 0, false,
             std::string("bin\x01"
                         "7",
                         5),
             {}),
      family("post_detail_*", 60, 0, true, "post_detail_1", {0, 1})};
  AuditContext context;
  context.target = "default";
  context.where = "127.0.0.1:6379/0";
  context.publication = "walbust";
  const std::string text = format_audit_text(families, {{"public.blog_tag", "no rule"}},
                                             summarize(families, 100), context, rules);
  EXPECT_NE(text.find("target default (127.0.0.1:6379/0), 100 keys scanned\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("2 of 3 families, 40 keys (40.0%)"), std::string::npos) << text;
  const auto user = text.find("user_profile_*");
  const auto bin = text.find("bin\\x01*");
  const auto post = text.find("post_detail_*");
  ASSERT_NE(user, std::string::npos) << text;
  ASSERT_NE(bin, std::string::npos) << text;
  ASSERT_NE(post, std::string::npos) << text;
  EXPECT_LT(user, bin);
  EXPECT_LT(bin, post);
  EXPECT_NE(text.find("30.0%"), std::string::npos) << text;
  EXPECT_NE(text.find("user_profile_17"), std::string::npos) << text;
  EXPECT_NE(text.find("bin\\x017"), std::string::npos) << text;
  EXPECT_NE(text.find("post-pages, comments"), std::string::npos) << text;
  EXPECT_NE(text.find("public.blog_tag: published, but no rule reads it"), std::string::npos)
      << text;
  EXPECT_EQ(text.find('\x01'), std::string::npos);
}

TEST(AuditText, SaysWhenEverythingIsCoveredAndWhyTheDatabaseWasNotChecked) {
  const RuleSet rules = two_rules();
  const std::vector<FamilyStats> families = {
      family("post_detail_*", 6, 0, true, "post_detail_1", {0})};
  AuditContext context;
  context.target = "default";
  context.where = "x";
  context.sample = 6;
  context.sample_reached = true;
  context.publication = "walbust";
  context.database_note = "connection refused";
  const std::string text = format_audit_text(families, {}, summarize(families, 6), context, rules);
  EXPECT_NE(text.find("stopped at --sample 6"), std::string::npos) << text;
  EXPECT_NE(text.find("not checked: connection refused"), std::string::npos) << text;
  EXPECT_NE(text.find("Every family is covered"), std::string::npos) << text;
  EXPECT_EQ(text.find("NOT INVALIDATED"), std::string::npos) << text;
}

TEST(AuditText, SaysWhenThePublicationIsMissing) {
  const RuleSet rules = two_rules();
  AuditContext context;
  context.publication = "walbust";
  context.publication_missing = true;
  const std::string text = format_audit_text({}, {{"public.blog_post", "not in publication"}},
                                             summarize({}, 0), context, rules);
  EXPECT_NE(text.find("the publication does not exist: walbust setup prints"), std::string::npos)
      << text;
  EXPECT_NE(text.find("public.blog_post: a rule reads it, but it is not in the publication"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace walbust
