// When the stream's socket is read again after a transaction: at once while commits are
// sparse, one window after the last frame while they are dense.
#include "walbust/core/read_window.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

using Clock = ReadWindow::Clock;
using std::chrono::microseconds;

// A stream whose transactions commit `gap_us` apart on the server's clock and arrive as
// frames `gap_us` apart on ours.
struct Stream {
  ReadWindow window;
  std::int64_t server_us = 1'000'000;
  Clock::time_point at = Clock::time_point{} + std::chrono::seconds(5);

  // Returns when the last of them arrived.
  Clock::time_point commits(int count, std::int64_t gap_us) {
    for (int i = 0; i < count; ++i) {
      server_us += gap_us;
      at += microseconds(gap_us);
      window.frame(at);
      window.commit(server_us);
    }
    return at;
  }
  [[nodiscard]] bool read_at_once() const { return window.until() <= at; }
};

TEST(ReadWindow, TheFirstCommitsOfAStreamAreReadAtOnce) {
  Stream s;
  s.commits(3, 200);
  EXPECT_FALSE(s.window.dense());
  EXPECT_TRUE(s.read_at_once());
}

TEST(ReadWindow, CommitsFurtherApartThanHalfAWindowAreReadAtOnce) {
  // 1,500 transactions/s: a window would gather about one of them per wake-up.
  Stream s;
  s.commits(1000, 667);
  EXPECT_FALSE(s.window.dense());
  EXPECT_TRUE(s.read_at_once());
}

TEST(ReadWindow, CommitsCloserThanHalfAWindowLeaveTheSocketUnwatchedUntilAWindowAfterTheLastFrame) {
  Stream s;
  const auto last = s.commits(1000, 200);
  EXPECT_TRUE(s.window.dense());
  EXPECT_EQ(s.window.until(), last + ReadWindow::kLength);
}

TEST(ReadWindow, TheWindowIsAnchoredOnTheLastFrameSoItNeverGrows) {
  Stream s;
  const auto last = s.commits(100, 100);
  const auto until = s.window.until();
  s.window.commit(s.server_us + 100);  // a Commit read from what libpq already held: no frame
  EXPECT_EQ(s.window.until(), until);
  EXPECT_EQ(until, last + ReadWindow::kLength);
}

TEST(ReadWindow, DenseTrafficAfterAQuietSpellOpensTheWindowWithinSixteenCommits) {
  // Sparse traffic, a minute of silence, then commits 0.2 ms apart: counted whole, the
  // silence would keep the average sparse for about 75 commits.
  Stream s;
  s.commits(1000, 667);
  s.commits(1, 60'000'000);
  ASSERT_FALSE(s.window.dense());
  int until_dense = 0;
  while (!s.window.dense() && until_dense < 100) {
    s.commits(1, 200);
    ++until_dense;
  }
  EXPECT_LE(until_dense, 16);
}

TEST(ReadWindow, ACommitAfterAQuietSpellIsReadAtOnceEvenWhileCommitsAreDense) {
  Stream s;
  s.commits(100, 200);
  ASSERT_TRUE(s.window.dense());
  const auto before_silence = s.at;
  // Nothing arrives for 5 ms: the window of the last frame has long ended when the next
  // commit comes, so the socket is watched and that commit is read as it arrives.
  EXPECT_LT(s.window.until(), before_silence + std::chrono::milliseconds(5));
}

TEST(ReadWindow, ACommitTimestampEarlierThanThePreviousOneCountsAsNoGap) {
  Stream s;
  s.commits(100, 667);
  ASSERT_FALSE(s.window.dense());
  // Concurrent backends: timestamps alternate back and forth, 40 µs apart on our clock.
  for (int i = 0; i < 40; ++i) {
    s.at += microseconds(40);
    s.window.frame(s.at);
    s.window.commit(s.server_us + ((i % 2) != 0 ? -300 : 80 * (i + 1)));
  }
  EXPECT_TRUE(s.window.dense()) << "backwards steps count as zero, not as huge unsigned gaps";
}

}  // namespace
}  // namespace walbust
