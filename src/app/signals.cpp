#include "signals.h"

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

namespace walbust {
namespace {

std::atomic<int> g_stop_signal{0};
std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
int g_wake_fd = -1;

void poke() {
  if (g_wake_fd >= 0) {
    const std::uint64_t one = 1;
    // Async-signal-safe; a full counter only means a wake-up is already pending.
    (void)!::write(g_wake_fd, &one, sizeof one);
  }
}

extern "C" void on_signal(int sig) {
  if (sig == SIGHUP) {
    g_reload.store(true);
  } else {
    g_stop_signal.store(sig);
    g_stop.store(true);
  }
  poke();
}

}  // namespace

void Signals::install() {
  if (g_wake_fd < 0) g_wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR and loops re-check flags
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

void Signals::begin_worker_thread(const std::string& name) {
  // The kernel keeps 15 bytes and refuses longer names outright.
  (void)pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

bool Signals::stop_requested() { return g_stop.load(); }
int Signals::stop_signal() { return g_stop_signal.load(); }
bool Signals::take_reload() { return g_reload.exchange(false); }
void Signals::request_stop() {
  g_stop.store(true);
  poke();
}
int Signals::wake_fd() { return g_wake_fd; }
void Signals::wake() { poke(); }

}  // namespace walbust
