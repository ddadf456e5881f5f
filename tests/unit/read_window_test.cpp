// When the stream's socket is read again after a transaction: at once while commits are
// sparse, one window after the last frame while they are dense.
#include "walbust/core/read_window.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

using Clock = ReadWindow::Clock;
using std::chrono::microseconds;

// Commits `count` transactions `gap_us` apart on the server's clock, each arriving as a
// frame `gap_us` apart on ours; returns when the last one arrived.
Clock::time_point commits(ReadWindow& window, Clock::time_point start, std::int64_t& server_us,
                          int count, std::int64_t gap_us) {
  Clock::time_point at = start;
  for (int i = 0; i < count; ++i) {
    server_us += gap_us;
    at += microseconds(gap_us);
    window.frame(at);
    window.commit(server_us);
  }
  return at;
}

TEST(ReadWindow, TheFirstCommitsOfAStreamAreReadAtOnce) {
  ReadWindow window;
  std::int64_t server_us = 1'000'000;
  const auto last =
      commits(window, Clock::time_point{} + std::chrono::seconds(5), server_us, 3, 200);
  EXPECT_FALSE(window.dense());
  EXPECT_LE(window.until(), last);
}

TEST(ReadWindow, CommitsFurtherApartThanHalfAWindowAreReadAtOnce) {
  // 1,500 transactions/s: a window would gather about one of them per wake-up.
  ReadWindow window;
  std::int64_t server_us = 1'000'000;
  const auto last =
      commits(window, Clock::time_point{} + std::chrono::seconds(5), server_us, 1000, 667);
  EXPECT_FALSE(window.dense());
  EXPECT_LE(window.until(), last);
}

TEST(ReadWindow, CommitsCloserThanHalfAWindowLeaveTheSocketUnwatchedUntilAWindowAfterTheLastFrame) {
  ReadWindow window;
  std::int64_t server_us = 1'000'000;
  const auto last =
      commits(window, Clock::time_point{} + std::chrono::seconds(5), server_us, 1000, 200);
  EXPECT_TRUE(window.dense());
  EXPECT_EQ(window.until(), last + ReadWindow::kLength);
}

TEST(ReadWindow, TheWindowIsAnchoredOnTheLastFrameSoItNeverGrows) {
  ReadWindow window;
  std::int64_t server_us = 1'000'000;
  const auto last =
      commits(window, Clock::time_point{} + std::chrono::seconds(5), server_us, 100, 100);
  const auto until = window.until();
  window.commit(server_us + 100);  // a Commit read from what libpq already held: no new frame
  EXPECT_EQ(window.until(), until);
  EXPECT_EQ(until, last + ReadWindow::kLength);
}

TEST(ReadWindow, DenseTrafficAfterAQuietSpellReopensTheWindowWithinSixteenCommits) {
  ReadWindow window;
  std::int64_t server_us = 1'000'000;
  auto last = commits(window, Clock::time_point{} + std::chrono::seconds(5), server_us, 100, 200);
  ASSERT_TRUE(window.dense());
  last = commits(window, last, server_us, 1, 60'000'000);  // a minute of silence
  EXPECT_LE(window.until(), last + ReadWindow::kLength)
      << "the quiet spell counts as two windows at most";
  int until_dense = 0;
  while (!window.dense() && until_dense < 100) {
    last = commits(window, last, server_us, 1, 200);
    ++until_dense;
  }
  EXPECT_LE(until_dense, 16);
}

TEST(ReadWindow, ACommitTimestampEarlierThanThePreviousOneCountsAsNoGap) {
  ReadWindow window;
  std::int64_t server_us = 1'000'000;
  auto last = commits(window, Clock::time_point{} + std::chrono::seconds(5), server_us, 100, 667);
  ASSERT_FALSE(window.dense());
  // Concurrent backends: timestamps alternate back and forth by 300 µs, 40 µs apart on average.
  for (int i = 0; i < 40; ++i) {
    last += microseconds(40);
    window.frame(last);
    window.commit(server_us + ((i % 2) != 0 ? -300 : 80 * (i + 1)));
  }
  EXPECT_TRUE(window.dense()) << "backwards steps count as zero, not as huge unsigned gaps";
}

}  // namespace
}  // namespace walbust
