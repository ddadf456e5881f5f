#pragma once
// How long the stream's socket may stay unwatched after a transaction was read. Promises
// the tests check:
//
// - While commits come closer together than half a window (their own commit timestamps,
//   smoothed over the last several), the socket is next watched one window after the last
//   frame arrived: the transactions that arrive meanwhile are read, matched and deleted
//   together, one wake-up of the thread for all of them. On a machine where walbust shares
//   the cores with the walsender and Redis, a wake-up per transaction takes more CPU from
//   the walsender than the wait costs (tests/bench/README.md).
// - Commits further apart are read the moment they arrive: a window would gather about one
//   of them per wake-up and only add its length to their latency.
// - The window is anchored on the last frame, so it never grows, and a commit after a
//   spell longer than the window is read at once.
// - Commit timestamps that go backwards (concurrent backends) count as no gap; a quiet
//   spell counts as at most two windows, so dense traffic reopens the window within a few
//   commits.
//
// It never does I/O and reads no clock: the caller passes the time.
#include <chrono>
#include <cstdint>

namespace walbust {

class ReadWindow {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::microseconds kLength{1000};

  // A frame of any kind arrived from the server.
  void frame(Clock::time_point at) { last_frame_ = at; }
  // A transaction's Commit, with its commit timestamp from the server (microseconds).
  void commit(std::int64_t commit_time_us);

  // Until when the socket may stay unwatched between transactions; at or before now
  // (min() while commits are sparse): watch it.
  [[nodiscard]] Clock::time_point until() const;
  [[nodiscard]] bool dense() const { return gap_us_ < kLength.count() / 2; }

 private:
  static constexpr std::int64_t kLongestGapUs = 2 * kLength.count();
  static constexpr std::int64_t kWeight = 8;  // a gap's share of the average: 1/kWeight

  Clock::time_point last_frame_{};
  std::int64_t last_commit_us_ = 0;
  bool seen_commit_ = false;
  std::int64_t gap_us_ = kLongestGapUs;  // smoothed gap between commits; sparse at start
};

}  // namespace walbust
