#include "walbust/io/systemd_notify.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace walbust {

SystemdNotifier::SystemdNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && *socket != '\0';
}

void SystemdNotifier::send(const char* message) {
  if (!enabled_) return;
  // unset_environment=0: child processes (none today) and later calls keep the socket.
  if (const int rc = sd_notify(0, message); rc < 0) {
    spdlog::debug("sd_notify failed: {}", std::strerror(-rc));
  }
}

void SystemdNotifier::ready() { send("READY=1"); }

void SystemdNotifier::status(std::string_view text) {
  // A newline would start a new assignment in the datagram.
  std::string message = "STATUS=";
  for (const char c : text) message += (c == '\n' || c == '\r') ? ' ' : c;
  send(message.c_str());
}

void SystemdNotifier::reloading() {
  // MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload to this
  // request; older versions ignore it.
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const long long usec = static_cast<long long>(ts.tv_sec) * 1000000LL + ts.tv_nsec / 1000;
  send(("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec)).c_str());
}

void SystemdNotifier::stopping() { send("STOPPING=1"); }

void SystemdNotifier::watchdog() { send("WATCHDOG=1"); }

std::optional<std::chrono::microseconds> SystemdNotifier::watchdog_interval() const {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
  return std::chrono::microseconds(usec / 2);
}

}  // namespace walbust
