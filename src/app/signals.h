#pragma once
// Signal handling: handlers only set flags and poke an eventfd, so the EventLoop blocked
// in poll() wakes at once instead of at its next deadline.
#include <atomic>
#include <string>

namespace walbust {

class Signals {
 public:
  // Installs handlers for SIGTERM, SIGINT, SIGHUP; ignores SIGPIPE.
  static void install();
  // Every worker thread calls this first: blocks those signals in it, so the thread that
  // polls the wake fd is the one interrupted, and names it (at most 15 bytes are kept), so
  // top -H, ps -L and a debugger tell the threads apart.
  static void begin_worker_thread(const std::string& name);

  static bool stop_requested();
  static int stop_signal();    // the signal number that asked to stop, or 0
  static bool take_reload();   // true once per SIGHUP
  static void request_stop();  // from code (e.g. a fatal sink error)
  static int wake_fd();        // readable after any signal; the EventLoop waiting on it drains it
  static void wake();          // makes wake_fd readable from another thread (news for the loop)
};

}  // namespace walbust
