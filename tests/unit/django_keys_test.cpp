#include "walbust/core/django_keys.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

TEST(DjangoKeys, Md5Hex) {
  EXPECT_TRUE(md5_available());
  EXPECT_EQ(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5_hex("7"), "8f14e45fceea167a5a36dedd4bea2543");
  EXPECT_EQ(md5_hex(std::string("a\0b", 3)), "70350f6027bce3713f6b76473084309b");
}

struct MakeKeyCase {
  std::string prefix;
  long long version;
  std::string key;
  std::string expected;
};

class DjangoMakeKey : public ::testing::TestWithParam<MakeKeyCase> {};

TEST_P(DjangoMakeKey, JoinsPrefixVersionAndKey) {
  const auto& c = GetParam();
  EXPECT_EQ(django_make_key(c.prefix, c.version, c.key), c.expected);
}

INSTANTIATE_TEST_SUITE_P(Cases, DjangoMakeKey,
                         ::testing::Values(MakeKeyCase{"", 1, "post_detail_42",
                                                       ":1:post_detail_42"},
                                           MakeKeyCase{"blog", 1, "k", "blog:1:k"},
                                           MakeKeyCase{"a:b", 12, "", "a:b:12:"},
                                           MakeKeyCase{"p", -3, "x y", "p:-3:x y"}));

struct FragmentCase {
  std::string name;
  std::vector<std::string> vary_on;
  std::string expected;
};

class DjangoFragmentKey : public ::testing::TestWithParam<FragmentCase> {};

TEST_P(DjangoFragmentKey, HashesEachValueFollowedByColon) {
  const auto& c = GetParam();
  EXPECT_EQ(django_fragment_key(c.name, c.vary_on), c.expected);
}

// Expected values from django.core.cache.utils.make_template_fragment_key (Django 3.2).
INSTANTIATE_TEST_SUITE_P(
    Cases, DjangoFragmentKey,
    ::testing::Values(
        FragmentCase{"footer", {}, "template.cache.footer.d41d8cd98f00b204e9800998ecf8427e"},
        FragmentCase{"sidebar", {"5"}, "template.cache.sidebar.016ce7cd3f0850d6c33696df9f9440d5"},
        FragmentCase{
            "featured", {"7", "True"}, "template.cache.featured.e1766015e2ffa08b2bfa34b5fbbad5df"},
        FragmentCase{"s", {"None"}, "template.cache.s.6846ba559f7f55c20a67d890d03d20e0"},
        // "a:" + "" differs from "" + "a:" only by where the separator falls.
        FragmentCase{"s", {"a", ""}, "template.cache.s." + md5_hex("a::")}));

}  // namespace
}  // namespace walbust
