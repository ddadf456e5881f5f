#include "walbust/core/key_family.h"

#include <gtest/gtest.h>

#include "support/rules_text.h"
#include "walbust/core/django_keys.h"

namespace walbust {
namespace {

using testing::load_ok;

struct FamilyCase {
  std::string key;
  std::string family;
};

class KeyFamily : public ::testing::TestWithParam<FamilyCase> {};

TEST_P(KeyFamily, ReplacesUuidsThenMd5RunsThenDigitRuns) {
  EXPECT_EQ(key_family(GetParam().key), GetParam().family) << GetParam().key;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, KeyFamily,
    ::testing::Values(
        FamilyCase{"user_profile_17", "user_profile_*"},
        FamilyCase{"home_page_posts", "home_page_posts"}, FamilyCase{"", ""}, FamilyCase{"42", "*"},
        FamilyCase{"a1b22c333", "a*b*c*"},
        FamilyCase{"blog:3:post_detail_7", "blog:*:post_detail_*"},
        // The example of the contract: a Django fragment key's MD5 is one '*'.
        FamilyCase{"site:1:template.cache.sidebar.3f2a5b7c9d1e3f5a7b9c1d3e5f7a9b9c",
                   "site:*:template.cache.sidebar.*"},
        FamilyCase{"session:0b7e1d0c-4f6a-4c2e-9d3b-2a1f0e9c8b7a", "session:*"},
        FamilyCase{"S:0B7E1D0C-4F6A-4C2E-9D3B-2A1F0E9C8B7A:x", "S:*:x"},
        // A UUID glued to more hex digits is not a UUID; its digit runs are replaced.
        FamilyCase{"a0b7e1d0c-4f6a-4c2e-9d3b-2a1f0e9c8b7a",
                   "a*b*e*d*c-*f*a-*c*e-*d*b-*a*f*e*c*b*a"},
        // 31 and 33 hex characters are not an MD5: only their digits go.
        FamilyCase{"h:3f2a5b7c9d1e3f5a7b9c1d3e5f7a9b9", "h:*f*a*b*c*d*e*f*a*b*c*d*e*f*a*b*"},
        FamilyCase{"h:3f2a5b7c9d1e3f5a7b9c1d3e5f7a9b9cc", "h:*f*a*b*c*d*e*f*a*b*c*d*e*f*a*b*cc"},
        FamilyCase{"x:deadbeefdeadbeefdeadbeefdeadbeef:y", "x:*:y"},
        FamilyCase{"two:d41d8cd98f00b204e9800998ecf8427e.d41d8cd98f00b204e9800998ecf8427e",
                   "two:*.*"},
        FamilyCase{std::string("bin\x00\xff"
                               "12",
                               7),
                   std::string("bin\x00\xff*", 6)}));

struct GlobCase {
  std::string pattern;
  std::string key;
  bool match;
};

class GlobMatch : public ::testing::TestWithParam<GlobCase> {};

TEST_P(GlobMatch, FollowsRedisGlobRules) {
  const auto& c = GetParam();
  EXPECT_EQ(glob_match(c.pattern, c.key), c.match) << c.pattern << " ~ " << c.key;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, GlobMatch,
    ::testing::Values(GlobCase{"*", "", true}, GlobCase{"*", "anything", true},
                      GlobCase{"", "", true}, GlobCase{"", "a", false},
                      GlobCase{"post_detail_*", "post_detail_7", true},
                      GlobCase{"post_detail_*", "post_detail_", true},
                      GlobCase{"post_detail_*", "post_details_7", false},
                      GlobCase{"h?llo", "hello", true}, GlobCase{"h?llo", "hllo", false},
                      GlobCase{"h[ae]llo", "hallo", true}, GlobCase{"h[ae]llo", "hillo", false},
                      GlobCase{"h[^e]llo", "hallo", true}, GlobCase{"h[^e]llo", "hello", false},
                      GlobCase{"h[a-b]llo", "hbllo", true}, GlobCase{"h[b-a]llo", "hallo", true},
                      GlobCase{"h[a-b]llo", "hcllo", false}, GlobCase{"a\\*b", "a*b", true},
                      GlobCase{"a\\*b", "axb", false}, GlobCase{"[\\]]", "]", true},
                      GlobCase{"a[bc", "ab", true}, GlobCase{"user:*:*", "user:1:profile", true},
                      GlobCase{"user:*:*", "user:1", false}, GlobCase{"*a*b*c", "xxaxxbxxbc", true},
                      GlobCase{"*a*b*c", "xxaxxbxxbcd", false}, GlobCase{"**x", "abx", true},
                      GlobCase{"a*", std::string("a\x00\xff", 3), true}));

TEST(CoverageIndex, NamesEveryRuleThatCouldProduceAKey) {
  const RuleSet rules = load_ok(R"(
version: 1
rules:
  - name: posts
    table: blog_post
    delete: ["post_detail_{id}", "home_page_posts", "tag_{tag|lower}_list"]
    delete_pattern: ["user:{author_id}:*"]
    bump_version: ["article_version_{id}"]
  - name: comments
    table: blog_comment
    delete: ["post_detail_{post_id}"]
  - name: other-target
    table: blog_tag
    targets: [sessions]
    delete: ["tag_{id}"]
)");
  const CoverageIndex index = CoverageIndex::from_rules(rules, "default");
  std::vector<std::uint32_t> out{99};
  index.covering_rules("post_detail_7", out);
  EXPECT_EQ(out, (std::vector<std::uint32_t>{0, 1}));
  index.covering_rules("home_page_posts", out);
  EXPECT_EQ(out, (std::vector<std::uint32_t>{0}));
  index.covering_rules("tag_news_list", out);
  EXPECT_EQ(out, (std::vector<std::uint32_t>{0}));
  index.covering_rules("user:5:profile", out);
  EXPECT_EQ(out, (std::vector<std::uint32_t>{0}));
  index.covering_rules("article_version_5", out);
  EXPECT_EQ(out, (std::vector<std::uint32_t>{0}));
  index.covering_rules("tag_5", out);  // its rule writes to another target only
  EXPECT_TRUE(out.empty());
  index.covering_rules("home_page_posts_2", out);
  EXPECT_TRUE(out.empty());
  const CoverageIndex sessions = CoverageIndex::from_rules(rules, "sessions");
  sessions.covering_rules("tag_5", out);
  EXPECT_EQ(out, (std::vector<std::uint32_t>{2}));
}

TEST(CoverageIndex, LiteralGlobCharactersInTemplatesAreLiteral) {
  const RuleSet rules = load_ok(R"(
version: 1
rules:
  - name: pages
    table: page
    delete: ["page[1]_{id}", "menu?"]
    delete_pattern: ["nav:[ab]:{id}"]
)");
  const CoverageIndex index = CoverageIndex::from_rules(rules, "default");
  std::vector<std::uint32_t> out;
  index.covering_rules("page[1]_7", out);
  EXPECT_EQ(out.size(), 1u);
  index.covering_rules("page1_7", out);
  EXPECT_TRUE(out.empty());
  index.covering_rules("menu?", out);
  EXPECT_EQ(out.size(), 1u);
  index.covering_rules("menuX", out);
  EXPECT_TRUE(out.empty());
  index.covering_rules("nav:a:7", out);  // delete_pattern text is the user's glob
  EXPECT_EQ(out.size(), 1u);
  index.covering_rules("nav:c:7", out);
  EXPECT_TRUE(out.empty());
}

TEST(CoverageIndex, AppliesDjangoKeyFormatAndFragments) {
  const RuleSet rules = load_ok(R"(
version: 1
defaults:
  key_format: django
  django: {key_prefix: "blog[1]", version: 3}
rules:
  - name: posts
    table: blog_post
    delete: ["post_detail_{id}", "home_page_posts"]
    fragment:
      - {name: sidebar, vary_on: ["{author_id}"]}
      - {name: footer}
)");
  const CoverageIndex index = CoverageIndex::from_rules(rules, "default");
  std::vector<std::uint32_t> out;
  index.covering_rules("blog[1]:3:post_detail_7", out);
  EXPECT_EQ(out.size(), 1u);
  index.covering_rules("blog[1]:3:home_page_posts", out);
  EXPECT_EQ(out.size(), 1u);
  index.covering_rules("blog1:3:post_detail_7", out);  // the prefix's brackets are literal
  EXPECT_TRUE(out.empty());
  index.covering_rules("blog[1]:2:post_detail_7", out);  // another version
  EXPECT_TRUE(out.empty());
  index.covering_rules("post_detail_7", out);  // without the Django prefix
  EXPECT_TRUE(out.empty());
  index.covering_rules("blog[1]:3:" + django_fragment_key("sidebar", {"17"}), out);
  EXPECT_EQ(out.size(), 1u);
  index.covering_rules("blog[1]:3:" + django_fragment_key("footer", {}), out);
  EXPECT_EQ(out.size(), 1u);
  index.covering_rules("blog[1]:3:" + django_fragment_key("header", {}), out);
  EXPECT_TRUE(out.empty());
}

TEST(FamilyAggregator, CountsKeysWithoutTtlAndKeepsAnUncoveredExample) {
  FamilyAggregator agg;
  agg.add("post_detail_1", true, {0});
  agg.add("post_detail_2", false, {0, 1});
  agg.add("user_profile_1", false, {});
  agg.add("user_profile_2", false, {});
  agg.add("user_profile_3", true, {});
  agg.add("cart_1", true, {2});
  agg.add("cart_2", true, {});  // one key no rule covers: the family is not covered
  EXPECT_EQ(agg.scanned(), 7u);
  const auto families = agg.sorted();
  ASSERT_EQ(families.size(), 3u);
  EXPECT_EQ(families[0].family, "user_profile_*");
  EXPECT_EQ(families[0].keys, 3u);
  EXPECT_EQ(families[0].no_ttl, 2u);
  EXPECT_FALSE(families[0].covered);
  EXPECT_EQ(families[0].example, "user_profile_1");
  EXPECT_EQ(families[1].family, "cart_*");
  EXPECT_FALSE(families[1].covered);
  EXPECT_EQ(families[1].example, "cart_2");
  EXPECT_EQ(families[1].rules, (std::vector<std::uint32_t>{2}));
  EXPECT_EQ(families[2].family, "post_detail_*");
  EXPECT_TRUE(families[2].covered);
  EXPECT_EQ(families[2].no_ttl, 1u);
  EXPECT_EQ(families[2].example, "post_detail_1");
  EXPECT_EQ(families[2].rules, (std::vector<std::uint32_t>{0, 1}));
}

TEST(FamilyAggregator, SortsLargestFirstWithinUncoveredThenCovered) {
  FamilyAggregator agg;
  for (int i = 0; i < 3; ++i) agg.add("b_" + std::to_string(i), true, {});
  for (int i = 0; i < 5; ++i) agg.add("a_" + std::to_string(i), true, {0});
  for (int i = 0; i < 3; ++i) agg.add("a" + std::to_string(i), true, {});
  agg.add("c", true, {});
  const auto families = agg.sorted();
  ASSERT_EQ(families.size(), 4u);
  EXPECT_EQ(families[0].family, "a*");
  EXPECT_EQ(families[1].family, "b_*");
  EXPECT_EQ(families[2].family, "c");
  EXPECT_EQ(families[3].family, "a_*");
}

TEST(FamilyAggregator, KeysOfFamiliesBeyondTheCapGoToOneOverflowBucket) {
  FamilyAggregator agg(2);
  agg.add("a_1", true, {0});
  agg.add("b_1", true, {0});
  agg.add("c_1", false, {0});
  agg.add("d_1", true, {});
  agg.add("a_2", true, {0});  // a known family still counts as itself
  EXPECT_EQ(agg.family_count(), 3u);
  const auto families = agg.sorted();
  ASSERT_EQ(families.size(), 3u);
  EXPECT_TRUE(families[0].overflow);
  EXPECT_EQ(families[0].family, "(other)");
  EXPECT_EQ(families[0].keys, 2u);
  EXPECT_EQ(families[0].no_ttl, 1u);
  EXPECT_FALSE(families[0].covered);
  EXPECT_EQ(families[0].example, "d_1");
  EXPECT_EQ(families[1].family, "a_*");
  EXPECT_EQ(families[1].keys, 2u);
}

}  // namespace
}  // namespace walbust
