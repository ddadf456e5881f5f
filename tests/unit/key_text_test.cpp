// escape_key_text: keys in text output, one per line, never two alike.
#include "walbust/core/key_text.h"

#include <gtest/gtest.h>

#include <string>

namespace walbust {
namespace {

TEST(KeyText, KeepsUtf8AndEscapesEverythingElse) {
  EXPECT_EQ(escape_key_text("plain_key_1"), "plain_key_1");
  EXPECT_EQ(escape_key_text("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(escape_key_text(std::string("a\x00"
                                        "b",
                                        3)),
            "a\\x00b");
  EXPECT_EQ(escape_key_text("a\nb\tc\\d"), "a\\nb\\tc\\\\d");
  EXPECT_EQ(escape_key_text("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(escape_key_text("\xc3"), "\\xc3");                    // truncated sequence
  EXPECT_EQ(escape_key_text("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
  EXPECT_EQ(escape_key_text("\x7f"), "\\x7f");
}

TEST(KeyText, TwoKeysThatDifferOnlyByAnEscapeNeverPrintAlike) {
  // A key holding a backslash and an n, and a key holding a newline.
  EXPECT_NE(escape_key_text("a\\nb"), escape_key_text("a\nb"));
  EXPECT_NE(escape_key_text("\\xff"), escape_key_text("\xff"));
}

}  // namespace
}  // namespace walbust
