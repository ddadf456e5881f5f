#pragma once
// sd_notify(3) messages for Type=notify: readiness, status text, reloads, shutdown and
// watchdog keep-alives. Without NOTIFY_SOCKET (not under systemd) every call is a no-op.
#include <chrono>
#include <optional>
#include <string_view>

namespace walbust {

class SystemdNotifier {
 public:
  SystemdNotifier();

  // True when NOTIFY_SOCKET is set, i.e. the service manager listens.
  [[nodiscard]] bool enabled() const { return enabled_; }

  void ready();                        // READY=1
  void status(std::string_view text);  // STATUS=text (newlines become spaces)
  void reloading();                    // RELOADING=1 (send ready() when the reload is done)
  void stopping();                     // STOPPING=1
  void watchdog();                     // WATCHDOG=1

  // How often to call watchdog(): half of WatchdogSec, as sd_watchdog_enabled(3) advises,
  // or nullopt when the watchdog is off or WATCHDOG_PID names another process.
  [[nodiscard]] std::optional<std::chrono::microseconds> watchdog_interval() const;

 private:
  void send(const char* message);
  bool enabled_ = false;
};

}  // namespace walbust
