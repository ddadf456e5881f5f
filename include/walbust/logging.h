#pragma once
// Logging setup: spdlog to stderr (stdout carries command output).
#include <string>

namespace walbust {

struct LogSettings {
  std::string level = "info";   // trace | debug | info | warn | error
  std::string format = "auto";  // auto | text | json
};

// Installs the default logger. `auto` writes journald-style "<N>" priority prefixes when
// JOURNAL_STREAM is set (running under systemd), plain text otherwise.
void setup_logging(const LogSettings& settings);

}  // namespace walbust
