#include "walbust/core/lsn.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

struct ParseCase {
  const char* text;
  std::optional<Lsn> expected;
};

class ParseLsn : public ::testing::TestWithParam<ParseCase> {};

TEST_P(ParseLsn, Parses) {
  const auto& c = GetParam();
  EXPECT_EQ(parse_lsn(c.text), c.expected) << '"' << c.text << '"';
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseLsn,
    ::testing::Values(
        ParseCase{"0/0", 0}, ParseCase{"0/1A2B3C8", 0x1A2B3C8},
        ParseCase{"16/B374D848", 0x16B374D848}, ParseCase{"16/b374d848", 0x16B374D848},
        ParseCase{"FFFFFFFF/FFFFFFFF", 0xFFFFFFFFFFFFFFFF},
        ParseCase{"ffffffff/ffffffff", 0xFFFFFFFFFFFFFFFF}, ParseCase{"00000000/00000001", 1},
        ParseCase{"1/0", 0x100000000}, ParseCase{"100000000/0", std::nullopt},  // 9-digit high half
        ParseCase{"0/100000000", std::nullopt},                                 // 9-digit low half
        ParseCase{"0", std::nullopt}, ParseCase{"16B374D848", std::nullopt},
        ParseCase{"", std::nullopt}, ParseCase{"/", std::nullopt}, ParseCase{"0/", std::nullopt},
        ParseCase{"/0", std::nullopt}, ParseCase{" 0/0", std::nullopt},
        ParseCase{"0/0 ", std::nullopt}, ParseCase{"0 /0", std::nullopt},
        ParseCase{"0/ 0", std::nullopt}, ParseCase{"0/0/0", std::nullopt},
        ParseCase{"0x1/0", std::nullopt}, ParseCase{"-1/0", std::nullopt},
        ParseCase{"+1/0", std::nullopt}, ParseCase{"G/0", std::nullopt},
        ParseCase{"0/g", std::nullopt}, ParseCase{"0/0\n", std::nullopt}));

TEST(ParseLsn, RejectsEmbeddedNul) {
  EXPECT_EQ(parse_lsn(std::string_view("0/1\0", 4)), std::nullopt);
}

struct FormatCase {
  Lsn lsn;
  const char* expected;
};

class FormatLsn : public ::testing::TestWithParam<FormatCase> {};

TEST_P(FormatLsn, FormatsAndRoundTrips) {
  const auto& c = GetParam();
  EXPECT_EQ(format_lsn(c.lsn), c.expected);
  EXPECT_EQ(parse_lsn(format_lsn(c.lsn)), c.lsn);
}

INSTANTIATE_TEST_SUITE_P(Table, FormatLsn,
                         ::testing::Values(FormatCase{0, "0/0"}, FormatCase{0x1A2B3C8, "0/1A2B3C8"},
                                           FormatCase{0x16B374D848, "16/B374D848"},
                                           FormatCase{0x100000000, "1/0"},
                                           FormatCase{0xFFFFFFFF, "0/FFFFFFFF"},
                                           FormatCase{0xFFFFFFFFFFFFFFFF, "FFFFFFFF/FFFFFFFF"},
                                           FormatCase{0x0000000A0000000B, "A/B"}));

TEST(FormatLsn, RoundTripsManyValues) {
  Lsn lsn = 1;
  for (int i = 0; i < 64; ++i, lsn = lsn * 3 + 7) {
    EXPECT_EQ(parse_lsn(format_lsn(lsn)), lsn) << format_lsn(lsn);
  }
}

}  // namespace
}  // namespace walbust
