#pragma once
// A stackful coroutine on the thread that resumes it. It keeps three promises:
//
// - Only one piece of code runs at a time: a fiber runs from resume() until it waits or
//   returns, and nothing else on the thread runs meanwhile. Data shared between a fiber
//   and its owner needs no lock; it only changes at a wait.
// - A wait inside a fiber suspends it and hands control back to resume()'s caller, which
//   owns the fd and the deadline and resumes the fiber when either is due. Outside a fiber
//   the same wait blocks in poll(), so code written against these waits (the Redis layer)
//   runs unchanged in a command-line tool and on the event loop.
// - cancel() ends a fiber deterministically: every wait from then on returns at once as a
//   timeout, so the body unwinds through its own error paths, destructors included.
//
// Why stackful: the Redis layer is sequential protocol logic (cluster redirections, SCAN
// loops, WAIT, sentinel discovery, TLS handshakes). On its own stack it stays the plain
// code it is, where stackless coroutines would turn every function on the path into one.
//
// Rules for code running in a fiber: never wait inside a catch handler or a destructor
// (the C++ runtime keeps the exceptions in flight per thread, not per fiber), and let no
// exception escape the body (resume() rethrows it, after the fiber ended).
#include <poll.h>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>

namespace walbust {

class Fiber {
 public:
  using Body = std::function<void()>;
  enum class Wake { Ready, Timeout };

  // The stack is allocated (with a guard page below it) when constructed; the body first
  // runs at the first resume().
  explicit Fiber(Body body, std::size_t stack_bytes = kDefaultStackBytes);
  // Cancels a fiber that has not finished, so its stack unwinds before it is freed.
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // From outside any fiber: runs the body until its next wait or its end. `wake` is what
  // the pending wait returns. Rethrows an exception the body let escape.
  void resume(Wake wake = Wake::Ready);
  // Every wait from now on returns Timeout without suspending; a suspended fiber is
  // resumed until it ends.
  void cancel();

  [[nodiscard]] bool finished() const { return finished_; }
  [[nodiscard]] bool cancelled() const { return cancelled_; }
  [[nodiscard]] bool started() const { return started_; }
  // What the suspended fiber waits for: an fd (-1: none, a sleep or an owner's signal)
  // with poll() events, at most for `timeout` from when it suspended.
  [[nodiscard]] int wait_fd() const { return wait_fd_; }
  [[nodiscard]] short wait_events() const { return wait_events_; }
  [[nodiscard]] std::chrono::milliseconds wait_timeout() const { return wait_timeout_; }

  // The fiber running on this thread, or null.
  [[nodiscard]] static Fiber* current();

  static constexpr std::size_t kDefaultStackBytes = 512 * 1024;

 private:
  struct Context;
  friend Wake fiber_wait(int fd, short events, std::chrono::milliseconds timeout);
  static void trampoline();
  void enter();
  void switch_in();
  void switch_out();

  Body body_;
  std::unique_ptr<Context> ctx_;
  bool started_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
  Wake wake_ = Wake::Ready;
  int wait_fd_ = -1;
  short wait_events_ = 0;
  std::chrono::milliseconds wait_timeout_{0};
  std::exception_ptr escaped_;
};

// Waits until `fd` (-1: none) is ready for `events` (POLLIN, POLLOUT) or `timeout`
// passes. In a fiber it suspends; elsewhere it blocks in poll(). Ready also covers an
// error or hang-up on the fd, which the next read or write reports.
[[nodiscard]] Fiber::Wake fiber_wait(int fd, short events, std::chrono::milliseconds timeout);

// Sleeps: suspends a fiber, blocks anything else. Returns false when a fiber was cancelled.
bool pause_for(std::chrono::milliseconds delay);

}  // namespace walbust
