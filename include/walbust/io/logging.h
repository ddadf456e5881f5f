#pragma once
// Logging setup: spdlog to stderr (stdout carries command output), in one of three styles:
// plain text (coloured on a terminal), journald lines with "<N>" syslog priority prefixes,
// or one JSON object per line. Also the redaction every logged connection string goes through.
#include <iosfwd>
#include <string>
#include <string_view>

#include "walbust/core/settings.h"

namespace walbust {

enum class LogStyle { text, journal, json };

[[nodiscard]] bool is_valid_log_level(std::string_view level);
[[nodiscard]] bool is_valid_log_format(std::string_view format);

// "auto" is journal when JOURNAL_STREAM is set (stderr goes to journald under systemd),
// text otherwise. Throws std::invalid_argument for an unknown format.
[[nodiscard]] LogStyle resolve_log_style(std::string_view format);

// Installs the default logger writing to stderr. May be called again (e.g. on reload) to
// change level or format. Throws std::invalid_argument for an unknown level or format.
void setup_logging(const LogSettings& settings);
// The same, writing to `out` without colours: lets tests see exactly what is emitted.
// `out` must outlive the logger (until the next setup_logging call).
void setup_logging(const LogSettings& settings, std::ostream& out);

// The libpq conninfo ("host=x password=y", quoted values included) or URI
// ("postgresql://user:pw@host/db?password=pw", "redis://user:pw@host/0") with every password
// replaced by "***", so a connection string can be logged without its secret.
[[nodiscard]] std::string redact_conninfo(std::string_view dsn);

}  // namespace walbust
