#pragma once
// The one wait of the thread that streams from PostgreSQL. It keeps three promises:
//
// - One poll() per round covers the caller's socket, the process's wake fd and the fds of
//   every source; it ends when one of them is ready or at the earliest deadline any of
//   them named, never later.
// - Every source is dispatched in every round, after the poll, with the revents of its
//   own fds: a source reads what is ready before it judges its timeouts, so a round that
//   came late (the caller was busy) never fails a connection whose answer is waiting.
// - A source that is slow or stalled only delays itself: its fds and deadlines never
//   postpone another source's deadline or the caller's.
// - A source may defer its fds for a round: they do not end the wait, and once it ended
//   (another fd, a deadline) a second poll() that does not wait fills in their revents.
//   A wake-up of the thread costs more than that poll, so a Redis reply nothing waits
//   for rides along with the stream's next wake-up instead of causing one of its own.
//
// poll() rather than epoll: a handful of fds whose interest changes from round to round
// (libpq alternates between wanting to read and to write while it connects), where
// epoll's registration calls would cost more than the scan they save. ppoll(), for its
// timeout in nanoseconds: the stream's read window and the deferred replies are deadlines
// under a millisecond, which poll()'s whole milliseconds would round up to twice as long.
//
// The clock and the poll call can be replaced, so the scheduling is tested without
// sockets or waiting (tests/unit/event_loop_test.cpp).
#include <poll.h>

#include <chrono>
#include <functional>
#include <span>
#include <vector>

namespace walbust {

class EventLoop {
 public:
  using Clock = std::chrono::steady_clock;
  using NowFn = std::function<Clock::time_point()>;
  // poll() with a timeout that is never negative (no wait: zero).
  using PollFn = std::function<int(pollfd* fds, nfds_t count, std::chrono::nanoseconds timeout)>;

  // Something with sockets and deadlines of its own, served by the loop.
  class Source {
   public:
    virtual ~Source() = default;
    // Adds the fds this source waits for now (its next dispatch sees their revents in the
    // same order) and returns when it must run again at the latest (max(): no deadline).
    // No side effects: everything happens in dispatch.
    virtual Clock::time_point prepare(std::vector<pollfd>& fds) = 0;
    // After the wait, every round: `ready` holds the fds it added, with their revents.
    virtual void dispatch(Clock::time_point now, std::span<const pollfd> ready) = 0;
    // True for a source whose events leave the caller nothing to do (a Redis target
    // confirming a batch): run_until() keeps waiting through them.
    [[nodiscard]] virtual bool serves_itself() const { return false; }
    // True when the fds of the last prepare() are deferred this round (see above); the
    // deadline it returned bounds how long that may last.
    [[nodiscard]] virtual bool defers_fds() const { return false; }
  };

  // `wake_fd` (-1: none) is an eventfd that other threads and signal handlers write to
  // end a wait early; the loop drains it.
  explicit EventLoop(int wake_fd, NowFn now = Clock::now, PollFn poll = system_poll);

  // ppoll() without a signal mask.
  static int system_poll(pollfd* fds, nfds_t count, std::chrono::nanoseconds timeout);

  // Served in every round until removed; not owned.
  void add(Source& source);
  void remove(Source& source);

  // One round: waits for `fd` (-1: none) to become readable, the wake fd, or the sources,
  // at most until `until` (now or earlier: no wait, only what is ready already), then
  // dispatches every source. Returns true when `fd` is readable.
  bool run_once(Clock::time_point until, int fd = -1);
  // Rounds until `fd` is readable, the wake fd fires, `until` passes, or a source that does
  // not serve itself had an event or came due. Returns true when `fd` is readable. A busy
  // Redis target thus costs its own dispatches, not a pass of the caller's loop per reply.
  bool run_until(Clock::time_point until, int fd);

 private:
  int wake_fd_;
  NowFn now_;
  PollFn poll_;
  std::vector<Source*> sources_;
  std::vector<pollfd> fds_;
  std::vector<std::size_t> first_fd_;   // per source: where its fds start in fds_
  std::vector<Clock::time_point> due_;  // per source: the deadline it named this round
  std::vector<std::size_t> deferred_;   // indexes in fds_ of deferred fds
  std::vector<pollfd> peek_;            // the deferred fds, polled once the wait ended
  bool caller_news_ = false;            // the last round has something for the caller

  void peek_deferred();
};

}  // namespace walbust
