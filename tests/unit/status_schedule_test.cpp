// StatusSchedule: when walbust sends status updates and how it judges a silent server,
// on a fake clock.
#include "walbust/core/status_schedule.h"

#include <gtest/gtest.h>

namespace walbust {
namespace {

using namespace std::chrono_literals;
using Clock = StatusSchedule::Clock;
using Silence = StatusSchedule::Silence;

const Clock::time_point t0 = Clock::time_point{} + 1000h;

TEST(StatusSchedule, AStatusUpdateIsDueOneIntervalAfterThePreviousOne) {
  StatusSchedule s(10s, t0);
  EXPECT_FALSE(s.status_due(t0 + 9999ms));
  EXPECT_TRUE(s.status_due(t0 + 10s));
  s.status_sent(t0 + 10s, false);
  EXPECT_FALSE(s.status_due(t0 + 19s));
  EXPECT_TRUE(s.status_due(t0 + 20s));
}

TEST(StatusSchedule, AShorterIntervalForcedByTheServerAppliesFromTheNextUpdate) {
  StatusSchedule s(10s, t0);
  s.set_status_interval(100ms);
  s.status_sent(t0, false);
  EXPECT_TRUE(s.status_due(t0 + 100ms));
  EXPECT_EQ(s.status_interval(), 100ms);
}

TEST(StatusSchedule, AServerSilentForHalfTheTimeoutIsAskedForAReplyAtMostEveryQuarter) {
  StatusSchedule s(10s, t0);
  EXPECT_EQ(s.silence(t0 + 14s), Silence::Fine);
  EXPECT_EQ(s.silence(t0 + 15s), Silence::AskForReply);
  s.status_sent(t0 + 15s, true);
  EXPECT_EQ(s.silence(t0 + 20s), Silence::Fine);
  EXPECT_EQ(s.silence(t0 + 22500ms), Silence::AskForReply);
}

TEST(StatusSchedule, AServerSilentForTheWholeTimeoutIsDead) {
  StatusSchedule s(10s, t0);
  s.status_sent(t0 + 15s, true);
  s.status_sent(t0 + 22500ms, true);
  EXPECT_EQ(s.silence(t0 + 29999ms), Silence::Fine);
  EXPECT_EQ(s.silence(t0 + 30s), Silence::Dead);
  EXPECT_EQ(s.silent_for(t0 + 31s), 31s);
  EXPECT_EQ(s.why_dead(t0 + 31s),
            "no data from the server for 31 s although a reply was requested");
}

TEST(StatusSchedule, AnyFrameFromTheServerEndsTheSilence) {
  StatusSchedule s(10s, t0);
  s.received(t0 + 29s);
  EXPECT_EQ(s.silence(t0 + 30s), Silence::Fine);
  EXPECT_EQ(s.silence(t0 + 59s), Silence::Dead);
}

TEST(StatusSchedule, TimeSpentNotReadingTheSocketIsNotCountedAsSilence) {
  // Blocked for 40 s on a full queue (Redis down): the server may have sent plenty.
  StatusSchedule s(10s, t0);
  s.forgive_silence(t0 + 40s);
  EXPECT_EQ(s.silence(t0 + 41s), Silence::Fine);
}

TEST(StatusSchedule, TheNextWakeupIsTheEarliestDeadline) {
  StatusSchedule s(10s, t0);
  EXPECT_EQ(s.next_wakeup(t0, false), t0 + 10s);  // the status update
  s.set_status_interval(60s);
  s.status_sent(t0, false);
  EXPECT_EQ(s.next_wakeup(t0, false), t0 + 15s);  // the reply request
  s.status_sent(t0 + 15s, true);
  // Asked at 15 s: the next request is due at 22.5 s, not at once again.
  EXPECT_EQ(s.next_wakeup(t0 + 15s, false), t0 + 22500ms);
  s.status_sent(t0 + 22500ms, true);
  EXPECT_EQ(s.next_wakeup(t0 + 22500ms, false), t0 + 30s);  // the verdict
}

TEST(StatusSchedule, ASleeperWakesForEveryDeadlineAndNeverSpins) {
  // Walk a silent minute the way a loop does: sleep until next_wakeup, act on what is due.
  StatusSchedule s(10s, t0);
  auto now = t0;
  int wakeups = 0, requests = 0;
  while (s.silence(now) != Silence::Dead) {
    const auto next = s.next_wakeup(now, false);
    ASSERT_GT(next, now) << "a wakeup that is already due would spin";
    now = next;
    ++wakeups;
    const bool ask = s.silence(now) == Silence::AskForReply;
    if (ask || s.status_due(now)) s.status_sent(now, ask);
    requests += ask ? 1 : 0;
  }
  EXPECT_EQ(now, t0 + 30s);
  EXPECT_EQ(requests, 2);  // at 15 s and 22.5 s
  EXPECT_LE(wakeups, 6);
}

TEST(StatusSchedule, AnEndposProbeIsDueEvery200MsOnlyWhileProbing) {
  StatusSchedule s(10s, t0);
  s.status_sent(t0, true);
  EXPECT_FALSE(s.endpos_probe_due(t0 + 199ms));
  EXPECT_TRUE(s.endpos_probe_due(t0 + 200ms));
  EXPECT_EQ(s.next_wakeup(t0, true), t0 + 200ms);
  EXPECT_EQ(s.next_wakeup(t0, false), t0 + 10s);
}

TEST(StatusSchedule, ARestartedStreamCountsFromTheRestart) {
  StatusSchedule s(10s, t0);
  s.restart(t0 + 100s);
  EXPECT_EQ(s.silence(t0 + 101s), Silence::Fine);
  EXPECT_FALSE(s.status_due(t0 + 101s));
  EXPECT_TRUE(s.status_due(t0 + 110s));
}

}  // namespace
}  // namespace walbust
