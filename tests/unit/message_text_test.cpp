// one_line: the one way walbust folds a multi-line error message into a log line.
#include "walbust/core/message_text.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

TEST(OneLine, LibpqLinesAreJoinedAndTheFinalNewlineDropped) {
  EXPECT_EQ(one_line("FATAL:  password authentication failed for user \"walbust\"\n"),
            "FATAL:  password authentication failed for user \"walbust\"");
  EXPECT_EQ(one_line("ERROR:  relation \"x\" does not exist\nLINE 1: SELECT 1\n"),
            "ERROR:  relation \"x\" does not exist; LINE 1: SELECT 1");
}

TEST(OneLine, IndentedContinuationsAndCarriageReturnsAreOneBreak) {
  EXPECT_EQ(one_line("could not connect\n\tIs the server running?\r\n  HINT: start it"),
            "could not connect; Is the server running?; HINT: start it");
}

TEST(OneLine, TrailingBlanksAndEmptyMessagesAreHandled) {
  EXPECT_EQ(one_line("no answer  \n"), "no answer");
  EXPECT_EQ(one_line(""), "");
  EXPECT_EQ(one_line("\n\n"), "");
}

}  // namespace
}  // namespace walbust
