// The EventLoop's scheduling on a fake clock and a fake poll(): which deadline ends a
// round, who is dispatched with what, and that a stalled connection delays nobody else.
#include "walbust/io/event_loop.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <vector>

namespace walbust {
namespace {

using Clock = EventLoop::Clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Time stands still except inside poll(), which jumps to the first fd that becomes ready
// or to the end of its timeout. Readiness is scripted per fd as a list of instants.
struct FakeWorld {
  Clock::time_point now{seconds(1000)};
  std::map<int, std::vector<Clock::time_point>> ready_at;  // sorted per fd
  std::vector<Clock::duration> timeouts;                   // every poll's timeout
  bool interrupt_next = false;

  EventLoop loop(int wake_fd = -1) {
    return EventLoop(
        wake_fd, [this] { return now; },
        [this](pollfd* fds, nfds_t n, std::chrono::nanoseconds timeout) {
          return poll(fds, n, timeout);
        });
  }

  int poll(pollfd* fds, nfds_t n, std::chrono::nanoseconds timeout) {
    timeouts.push_back(timeout);
    if (interrupt_next) {
      interrupt_next = false;
      errno = EINTR;
      return -1;
    }
    auto until = now + timeout;
    for (nfds_t i = 0; i < n; ++i) {
      auto it = ready_at.find(fds[i].fd);
      if (fds[i].fd >= 0 && it != ready_at.end() && !it->second.empty())
        until = std::min(until, std::max(now, it->second.front()));
    }
    now = until;
    int ready = 0;
    for (nfds_t i = 0; i < n; ++i) {
      fds[i].revents = 0;
      auto it = ready_at.find(fds[i].fd);
      if (fds[i].fd < 0 || it == ready_at.end() || it->second.empty()) continue;
      if (it->second.front() <= now) {
        fds[i].revents = POLLIN;
        it->second.erase(it->second.begin());
        ++ready;
      }
    }
    return ready;
  }
};

// A source with fixed fds and a deadline that re-arms every `period` once it passed.
struct PeriodicSource : EventLoop::Source {
  std::vector<int> fds;
  Clock::time_point deadline = Clock::time_point::max();
  Clock::duration period{};
  int runs = 0;                          // dispatches at or after the deadline
  Clock::duration worst{};               // how late the latest of them came
  std::vector<std::vector<short>> seen;  // revents per dispatch

  Clock::time_point prepare(std::vector<pollfd>& out) override {
    for (int fd : fds) out.push_back(pollfd{fd, POLLIN, 0});
    return deadline;
  }
  void dispatch(Clock::time_point now, std::span<const pollfd> ready) override {
    std::vector<short> revents;
    for (const auto& p : ready) revents.push_back(p.revents);
    seen.push_back(revents);
    if (now < deadline) return;
    ++runs;
    worst = std::max(worst, now - deadline);
    deadline = period.count() > 0 ? deadline + period : Clock::time_point::max();
  }
};

TEST(EventLoop, ARoundEndsAtTheEarliestDeadlineOfItsSourcesAndTheCaller) {
  FakeWorld world;
  auto loop = world.loop();
  PeriodicSource slow, soon;
  slow.deadline = world.now + milliseconds(300);
  soon.deadline = world.now + milliseconds(100);
  loop.add(slow);
  loop.add(soon);
  const auto start = world.now;
  EXPECT_FALSE(loop.run_once(start + seconds(1)));
  EXPECT_EQ(world.timeouts.back(), milliseconds(100));
  EXPECT_EQ(world.now, start + milliseconds(100));
  EXPECT_EQ(soon.runs, 1);
  EXPECT_EQ(slow.runs, 0);
  EXPECT_EQ(slow.seen.size(), 1U) << "every source is dispatched in every round";
  (void)loop.run_once(start + milliseconds(50));
  EXPECT_EQ(world.timeouts.back(), Clock::duration::zero())
      << "a caller's deadline in the past means no wait";
}

TEST(EventLoop, ADeadlineUnderAMillisecondAwayIsWaitedForExactlyNotRoundedUp) {
  FakeWorld world;
  auto loop = world.loop();
  const auto start = world.now;
  EXPECT_FALSE(loop.run_once(start + std::chrono::microseconds(250)));
  EXPECT_EQ(world.timeouts.back(), std::chrono::microseconds(250));
  EXPECT_EQ(world.now, start + std::chrono::microseconds(250));
}

TEST(EventLoop, TheSystemPollWaitsForItsTimeoutInMicrosecondsAndAcceptsNoDeadline) {
  // poll() would round 300 µs up to 1 ms; the shortest of a few waits shows the rounding
  // even on a busy machine, where one wait may be late.
  pollfd none{-1, POLLIN, 0};
  Clock::duration shortest = Clock::duration::max();
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    EXPECT_EQ(EventLoop::system_poll(&none, 1, std::chrono::microseconds(300)), 0);
    const auto waited = Clock::now() - start;
    EXPECT_GE(waited, std::chrono::microseconds(300));
    shortest = std::min(shortest, waited);
  }
  EXPECT_LT(shortest, milliseconds(1)) << "the timeout was rounded up to a millisecond";
  const int fd = ::eventfd(1, EFD_NONBLOCK);
  ASSERT_GE(fd, 0);
  pollfd ready{fd, POLLIN, 0};
  EXPECT_EQ(EventLoop::system_poll(&ready, 1, Clock::duration::max()), 1)
      << "max() (no deadline) must not overflow the timespec";
  ::close(fd);
}

TEST(EventLoop, AStalledConnectionDelaysNoOtherDeadlineForAMinute) {
  // A Redis connection that answers nothing for 60 s, while the walsender asks for a reply
  // every 100 ms and status updates are due every 70 ms: every ask is seen in the round it
  // arrives and every status deadline is met on time.
  FakeWorld world;
  auto loop = world.loop();
  const int replication = 10, redis = 11;
  const auto start = world.now;
  for (int i = 1; i <= 600; ++i)
    world.ready_at[replication].push_back(start + i * milliseconds(100));
  world.ready_at[redis].push_back(start + seconds(60) + milliseconds(50));
  PeriodicSource stalled, status;
  stalled.fds = {redis};
  status.deadline = start + milliseconds(70);
  status.period = milliseconds(70);
  loop.add(stalled);
  loop.add(status);
  int asks = 0;
  while (world.now < start + seconds(60)) {
    if (loop.run_once(world.now + seconds(10), replication)) ++asks;
  }
  EXPECT_EQ(asks, 600);
  EXPECT_EQ(status.runs, 60000 / 70);
  EXPECT_EQ(status.worst, Clock::duration::zero());
  for (const auto& revents : stalled.seen) EXPECT_EQ(revents, std::vector<short>{0});
  (void)loop.run_once(world.now + seconds(10), replication);
  EXPECT_EQ(stalled.seen.back(), std::vector<short>{POLLIN}) << "and it is served once it answers";
}

TEST(EventLoop, EachSourceSeesOnlyItsOwnFdsInTheOrderItAddedThem) {
  FakeWorld world;
  auto loop = world.loop();
  PeriodicSource two, one;
  two.fds = {20, 21};
  one.fds = {30};
  loop.add(two);
  loop.add(one);
  world.ready_at[21].push_back(world.now);
  world.ready_at[30].push_back(world.now);
  EXPECT_FALSE(loop.run_once(world.now + seconds(1), 5));
  EXPECT_EQ(two.seen.back(), (std::vector<short>{0, POLLIN}));
  EXPECT_EQ(one.seen.back(), (std::vector<short>{POLLIN}));
}

TEST(EventLoop, ALateRoundLetsASourceReadItsAnswerBeforeItsTimeout) {
  // The caller was busy long past the source's deadline, and the answer arrived meanwhile:
  // the source is dispatched with its fd ready, so it reads instead of timing out.
  FakeWorld world;
  auto loop = world.loop();
  PeriodicSource replica;
  replica.fds = {40};
  replica.deadline = world.now - seconds(30);
  world.ready_at[40].push_back(world.now - seconds(20));
  loop.add(replica);
  (void)loop.run_once(world.now);
  EXPECT_EQ(world.timeouts.back(), Clock::duration::zero());
  EXPECT_EQ(replica.seen.back(), std::vector<short>{POLLIN});
}

TEST(EventLoop, ASignalMidRoundIsARoundWithNothingReady) {
  FakeWorld world;
  auto loop = world.loop();
  PeriodicSource source;
  source.fds = {50};
  world.ready_at[50].push_back(world.now);
  loop.add(source);
  world.interrupt_next = true;
  EXPECT_NO_THROW((void)loop.run_once(world.now + seconds(1), 5));
  EXPECT_EQ(source.seen.back(), std::vector<short>{0});
  (void)loop.run_once(world.now + seconds(1), 5);
  EXPECT_EQ(source.seen.back(), std::vector<short>{POLLIN}) << "what was ready is seen next round";
}

TEST(EventLoop, ARemovedSourceIsNoLongerServed) {
  FakeWorld world;
  auto loop = world.loop();
  PeriodicSource source;
  loop.add(source);
  loop.add(source);
  (void)loop.run_once(world.now);
  EXPECT_EQ(source.seen.size(), 1U) << "added twice, served once";
  loop.remove(source);
  (void)loop.run_once(world.now);
  EXPECT_EQ(source.seen.size(), 1U);
}

// A PeriodicSource whose rounds leave the caller nothing to do (a Redis target).
struct SelfServingSource : PeriodicSource {
  [[nodiscard]] bool serves_itself() const override { return true; }
};

TEST(EventLoop, RunUntilWaitsThroughTheRoundsOfSourcesThatServeThemselves) {
  FakeWorld world;
  auto loop = world.loop();
  SelfServingSource target;
  target.fds = {20};
  const auto start = world.now;
  // The target's replies come every 10 ms; the caller's socket has data at 55 ms.
  for (int i = 1; i <= 9; ++i) world.ready_at[20].push_back(start + milliseconds(10 * i));
  world.ready_at[5] = {start + milliseconds(55)};
  loop.add(target);
  EXPECT_TRUE(loop.run_until(start + seconds(1), 5));
  EXPECT_EQ(world.now, start + milliseconds(55));
  EXPECT_EQ(target.seen.size(), 6U);  // five replies served, then the caller's round
  // Without the caller's fd, the wait runs to the deadline through every reply.
  EXPECT_FALSE(loop.run_until(start + milliseconds(200), -1));
  EXPECT_EQ(world.now, start + milliseconds(200));
}

TEST(EventLoop, RunUntilReturnsForASourceThatHasNewsForTheCaller) {
  FakeWorld world;
  auto loop = world.loop();
  SelfServingSource target;
  target.fds = {20};
  PeriodicSource replica;  // its answers change what the caller does next
  replica.fds = {21};
  const auto start = world.now;
  world.ready_at[20] = {start + milliseconds(10)};
  world.ready_at[21] = {start + milliseconds(30)};
  loop.add(target);
  loop.add(replica);
  EXPECT_FALSE(loop.run_until(start + seconds(1), -1));
  EXPECT_EQ(world.now, start + milliseconds(30));
  // A deadline that comes due is news as well.
  replica.deadline = start + milliseconds(70);
  EXPECT_FALSE(loop.run_until(start + seconds(1), -1));
  EXPECT_EQ(world.now, start + milliseconds(70));
  EXPECT_EQ(replica.runs, 1);
}

// A source whose fds never end a wait by themselves.
struct DeferringSource : PeriodicSource {
  [[nodiscard]] bool defers_fds() const override { return true; }
};

TEST(EventLoop, ADeferredReplyRidesAlongWithTheNextWakeUpInsteadOfCausingOne) {
  FakeWorld world;
  auto loop = world.loop();
  DeferringSource target;
  target.fds = {20};
  const auto start = world.now;
  target.deadline = start + milliseconds(5);  // how long the target lets its reply wait
  world.ready_at[20] = {start + milliseconds(1)};
  world.ready_at[5] = {start + milliseconds(3)};
  loop.add(target);
  // The reply is there at 1 ms, but the thread sleeps on until the caller's socket at 3 ms;
  // that round then sees both.
  EXPECT_TRUE(loop.run_once(start + seconds(1), 5));
  EXPECT_EQ(world.now, start + milliseconds(3));
  EXPECT_EQ(target.seen.back(), std::vector<short>{POLLIN});
  EXPECT_EQ(world.timeouts,
            (std::vector<Clock::duration>{milliseconds(5), Clock::duration::zero()}))
      << "one wait, then one look that does not wait";
  // With nothing else to wake for, the source's own deadline bounds the delay.
  world.ready_at[20] = {start + milliseconds(4)};
  target.deadline = start + milliseconds(6);
  EXPECT_FALSE(loop.run_once(start + seconds(1), 5));
  EXPECT_EQ(world.now, start + milliseconds(6));
  EXPECT_EQ(target.seen.back(), std::vector<short>{POLLIN});
}

TEST(EventLoop, TheWakeFdEndsARealWaitAndIsDrained) {
  const int wake = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(wake, 0);
  EventLoop loop(wake);
  const std::uint64_t one = 1;
  ASSERT_EQ(::write(wake, &one, sizeof one), static_cast<ssize_t>(sizeof one));
  const auto before = Clock::now();
  EXPECT_FALSE(loop.run_once(before + seconds(30)));
  EXPECT_LT(Clock::now() - before, seconds(5));
  std::uint64_t left = 0;
  EXPECT_EQ(::read(wake, &left, sizeof left), -1) << "the wake fd was not drained";
  EXPECT_EQ(errno, EAGAIN);
  ::close(wake);
}

TEST(EventLoop, ARealSocketWithDataIsReportedReadable) {
  int pair[2];
  ASSERT_EQ(::pipe(pair), 0);
  EventLoop loop(-1);
  EXPECT_FALSE(loop.run_once(Clock::now(), pair[0]));
  ASSERT_EQ(::write(pair[1], "x", 1), 1);
  EXPECT_TRUE(loop.run_once(Clock::now() + seconds(30), pair[0]));
  ::close(pair[0]);
  ::close(pair[1]);
}

}  // namespace
}  // namespace walbust
