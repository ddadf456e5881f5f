#include "walbust/io/fiber.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <stdexcept>
#include <string>
#include <vector>

namespace walbust {
namespace {

using namespace std::chrono_literals;

// Something on the fiber's stack that records its destruction.
struct Witness {
  explicit Witness(std::vector<std::string>& log) : log_(log) {}
  ~Witness() { log_.push_back("unwound"); }
  std::vector<std::string>& log_;
};

TEST(Fiber, RunsItsBodyFromWaitToWaitOnEachResume) {
  std::vector<std::string> log;
  Fiber f([&] {
    log.push_back("start");
    const auto w = fiber_wait(7, POLLIN, 250ms);
    log.push_back(w == Fiber::Wake::Ready ? "ready" : "timeout");
    (void)fiber_wait(-1, 0, 1s);
    log.push_back("end");
  });
  EXPECT_FALSE(f.started());
  f.resume();
  EXPECT_EQ(log, std::vector<std::string>{"start"});
  // The owner learns what the fiber waits for, and decides when it is due.
  EXPECT_EQ(f.wait_fd(), 7);
  EXPECT_EQ(f.wait_events(), POLLIN);
  EXPECT_EQ(f.wait_timeout(), 250ms);
  f.resume(Fiber::Wake::Timeout);
  EXPECT_EQ(log.back(), "timeout");
  EXPECT_EQ(f.wait_fd(), -1);
  EXPECT_FALSE(f.finished());
  f.resume();
  EXPECT_TRUE(f.finished());
  EXPECT_EQ(log.back(), "end");
  EXPECT_EQ(Fiber::current(), nullptr);
}

TEST(Fiber, IsCurrentOnlyWhileItRuns) {
  Fiber* seen = nullptr;
  Fiber f([&] { seen = Fiber::current(); });
  EXPECT_EQ(Fiber::current(), nullptr);
  f.resume();
  EXPECT_EQ(seen, &f);
  EXPECT_EQ(Fiber::current(), nullptr);
}

TEST(Fiber, CancelUnwindsTheStackAndMakesEveryLaterWaitATimeout) {
  std::vector<std::string> log;
  Fiber f([&] {
    Witness w(log);
    while (fiber_wait(-1, 0, 1s) == Fiber::Wake::Ready) log.push_back("woken");
    log.push_back("timed out");
    // Waits after the cancellation return at once: no loop can hold the fiber alive.
    log.push_back(pause_for(1h) ? "slept" : "cancelled");
  });
  f.resume();
  f.resume(Fiber::Wake::Ready);
  f.cancel();
  EXPECT_TRUE(f.finished());
  EXPECT_EQ(log, (std::vector<std::string>{"woken", "timed out", "cancelled", "unwound"}));
}

TEST(Fiber, DestroyingASuspendedFiberRunsItsDestructors) {
  std::vector<std::string> log;
  {
    Fiber f([&] {
      Witness w(log);
      (void)fiber_wait(-1, 0, 1h);
    });
    f.resume();
    EXPECT_TRUE(log.empty());
  }
  EXPECT_EQ(log, std::vector<std::string>{"unwound"});
}

TEST(Fiber, ExceptionsCaughtInsideStayInsideAndEscapingOnesReachResume) {
  int caught = 0;
  Fiber f([&] {
    try {
      (void)fiber_wait(-1, 0, 1s);  // waiting inside a try block is fine
      throw std::runtime_error("inside");
    } catch (const std::runtime_error&) {
      ++caught;
    }
    (void)fiber_wait(-1, 0, 1s);
    throw std::invalid_argument("escapes");
  });
  f.resume();
  f.resume();
  EXPECT_EQ(caught, 1);
  EXPECT_THROW(f.resume(), std::invalid_argument);
  EXPECT_TRUE(f.finished());
}

bool usr1_blocked() {
  sigset_t now;
  sigemptyset(&now);
  pthread_sigmask(SIG_BLOCK, nullptr, &now);
  return sigismember(&now, SIGUSR1) == 1;
}

void set_usr1_blocked(bool blocked) {
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &usr1, nullptr);
}

TEST(Fiber, ASwitchLeavesTheThreadsSignalMaskAsItIs) {
  // A switch saves no signal mask (that would be a system call each time): the fiber
  // sees the mask its thread has now, not the one it had when it last ran.
  std::vector<bool> seen;
  Fiber f([&] {
    seen.push_back(usr1_blocked());
    (void)fiber_wait(-1, 0, std::chrono::milliseconds(1));
    seen.push_back(usr1_blocked());
  });
  set_usr1_blocked(true);
  f.resume();
  set_usr1_blocked(false);
  f.resume();
  EXPECT_EQ(seen, (std::vector<bool>{true, false}));
  EXPECT_FALSE(usr1_blocked());
}

TEST(Fiber, AFiberCannotResumeAnother) {
  Fiber inner([] {});
  bool refused = false;
  Fiber outer([&] {
    try {
      inner.resume();
    } catch (const std::logic_error&) {
      refused = true;
    }
  });
  outer.resume();
  EXPECT_TRUE(refused);
  EXPECT_FALSE(inner.started());
}

TEST(Fiber, WaitsOutsideAFiberBlockInPoll) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  EXPECT_EQ(fiber_wait(p[0], POLLIN, 10ms), Fiber::Wake::Timeout);
  ASSERT_EQ(::write(p[1], "x", 1), 1);
  EXPECT_EQ(fiber_wait(p[0], POLLIN, 10ms), Fiber::Wake::Ready);
  EXPECT_TRUE(pause_for(1ms));
  ::close(p[0]);
  ::close(p[1]);
}

TEST(Fiber, ManyFibersInterleaveOnOneThread) {
  std::vector<int> order;
  std::vector<std::unique_ptr<Fiber>> fibers;
  for (int i = 0; i < 3; ++i) {
    fibers.push_back(std::make_unique<Fiber>([&order, i] {
      for (int round = 0; round < 3; ++round) {
        order.push_back(i * 10 + round);
        (void)fiber_wait(-1, 0, 1s);
      }
    }));
  }
  for (int round = 0; round < 4; ++round) {
    for (auto& f : fibers) f->resume();
  }
  EXPECT_EQ(order, (std::vector<int>{0, 10, 20, 1, 11, 21, 2, 12, 22}));
  for (auto& f : fibers) EXPECT_TRUE(f->finished());
}

}  // namespace
}  // namespace walbust
