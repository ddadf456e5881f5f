#include "walbust/io/logging.h"

#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace walbust {

namespace {

constexpr const char* kTextPattern = "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v";
constexpr const char* kSecretMask = "***";

spdlog::level::level_enum parse_level(std::string_view level) {
  if (level == "trace") return spdlog::level::trace;
  if (level == "debug") return spdlog::level::debug;
  if (level == "info") return spdlog::level::info;
  if (level == "warn") return spdlog::level::warn;
  if (level == "error") return spdlog::level::err;
  throw std::invalid_argument("log.level \"" + std::string(level) +
                              "\": expected trace, debug, info, warn or error");
}

// syslog(3) priorities as sd-daemon(3) prefixes expect them.
int syslog_priority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return 7;
    case spdlog::level::info:
      return 6;
    case spdlog::level::warn:
      return 4;
    case spdlog::level::err:
      return 3;
    default:
      return 2;
  }
}

const char* level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    default:
      return "critical";
  }
}

// "<N>message": journald parses the prefix into PRIORITY= and adds its own timestamp.
// Each line of a multi-line message gets the prefix, or journald would log the
// continuation lines at the default priority.
class JournalFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string prefix = "<" + std::to_string(syslog_priority(msg.level)) + ">";
    dest.append(prefix.data(), prefix.data() + prefix.size());
    for (const char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      dest.push_back(c);
      if (c == '\n') dest.append(prefix.data(), prefix.data() + prefix.size());
    }
    dest.push_back('\n');
  }
  [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JournalFormatter>();
  }
};

// {"ts":"2026-01-01T10:00:00.123Z","level":"info","msg":"..."}: one object per line, with
// nlohmann-json doing the escaping. Invalid UTF-8 (row values can hold anything) is replaced
// rather than throwing from inside a log call.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    const auto since_epoch = msg.time.time_since_epoch();
    const auto secs = duration_cast<seconds>(since_epoch);
    const auto millis = duration_cast<milliseconds>(since_epoch - secs).count();
    const time_t t = static_cast<time_t>(secs.count());
    tm utc{};
    gmtime_r(&t, &utc);
    char ts[40];
    const std::size_t n = std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(ts + n, sizeof ts - n, ".%03dZ", static_cast<int>(millis));

    nlohmann::ordered_json line;
    line["ts"] = ts;
    line["level"] = level_name(msg.level);
    line["msg"] = std::string(msg.payload.data(), msg.payload.size());
    const std::string out =
        line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    dest.append(out.data(), out.data() + out.size());
    dest.push_back('\n');
  }
  [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

std::unique_ptr<spdlog::formatter> make_formatter(LogStyle style) {
  switch (style) {
    case LogStyle::journal:
      return std::make_unique<JournalFormatter>();
    case LogStyle::json:
      return std::make_unique<JsonFormatter>();
    default:
      return std::make_unique<spdlog::pattern_formatter>(kTextPattern);
  }
}

void install(spdlog::sink_ptr sink, LogStyle style, spdlog::level::level_enum level) {
  sink->set_formatter(make_formatter(style));
  auto logger = std::make_shared<spdlog::logger>("walbust", std::move(sink));
  logger->set_level(level);
  // Replaces any earlier default logger, so a reload can switch level or format.
  spdlog::set_default_logger(std::move(logger));
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Keywords whose values are secrets: libpq's password and the TLS key passphrase, and the
// same spelling in Redis URL query strings.
bool is_secret_key(std::string_view key) {
  return iequals(key, "password") || iequals(key, "sslpassword");
}

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// Key/value conninfo, tokenized the way libpq's conninfo_parse does: `key = value`, where
// value is single-quoted (backslash escapes) or runs to the next whitespace.
std::string redact_keyword_value(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (is_space(s[i])) {
      out += s[i++];
      continue;
    }
    const std::size_t key_start = i;
    while (i < s.size() && !is_space(s[i]) && s[i] != '=') ++i;
    const std::string_view key = s.substr(key_start, i - key_start);
    out += key;
    while (i < s.size() && is_space(s[i])) out += s[i++];
    if (i >= s.size() || s[i] != '=') continue;  // malformed; libpq rejects it anyway
    out += s[i++];
    while (i < s.size() && is_space(s[i])) out += s[i++];
    const std::size_t value_start = i;
    if (i < s.size() && s[i] == '\'') {
      ++i;
      while (i < s.size() && s[i] != '\'') i += (s[i] == '\\') ? 2 : 1;
      i = std::min(i + 1, s.size());  // past the closing quote (or the end, unterminated)
    } else {
      while (i < s.size() && !is_space(s[i])) i += (s[i] == '\\') ? 2 : 1;
      i = std::min(i, s.size());
    }
    if (is_secret_key(key)) {
      out += kSecretMask;
    } else {
      out += s.substr(value_start, i - value_start);
    }
  }
  return out;
}

// scheme://[user[:password]@]host...[?key=value&...]
std::string redact_uri(std::string_view s, std::size_t authority_start) {
  const std::size_t query = std::min(s.find('?', authority_start), s.size());
  std::string out(s.substr(0, authority_start));
  // The last '@' before the query ends the userinfo, so an unencoded '@' or '/' in the
  // password is still hidden (erring toward hiding too much, never too little).
  const std::size_t at = s.substr(0, query).rfind('@');
  std::size_t pos = authority_start;
  if (at != std::string_view::npos && at >= authority_start) {
    const std::string_view userinfo = s.substr(authority_start, at - authority_start);
    const std::size_t colon = userinfo.find(':');
    if (colon != std::string_view::npos) {
      out += userinfo.substr(0, colon + 1);
      out += kSecretMask;
      pos = at;
    }
  }
  out += s.substr(pos, query - pos);
  if (query >= s.size()) return out;

  out += '?';
  std::size_t i = query + 1;
  while (i <= s.size()) {
    const std::size_t end = std::min({s.find('&', i), s.find('#', i), s.size()});
    const std::string_view param = s.substr(i, end - i);
    const std::size_t eq = param.find('=');
    if (eq != std::string_view::npos && is_secret_key(param.substr(0, eq))) {
      out += param.substr(0, eq + 1);
      out += kSecretMask;
    } else {
      out += param;
    }
    if (end >= s.size()) break;
    out += s[end];
    if (s[end] == '#') {
      out += s.substr(end + 1);
      break;
    }
    i = end + 1;
  }
  return out;
}

}  // namespace

bool is_valid_log_level(std::string_view level) {
  constexpr std::array<std::string_view, 5> kLevels{"trace", "debug", "info", "warn", "error"};
  return std::find(kLevels.begin(), kLevels.end(), level) != kLevels.end();
}

bool is_valid_log_format(std::string_view format) {
  return format == "auto" || format == "text" || format == "json";
}

LogStyle resolve_log_style(std::string_view format) {
  if (format == "text") return LogStyle::text;
  if (format == "json") return LogStyle::json;
  if (format == "auto") {
    const char* journal = std::getenv("JOURNAL_STREAM");
    return journal != nullptr && *journal != '\0' ? LogStyle::journal : LogStyle::text;
  }
  throw std::invalid_argument("log.format \"" + std::string(format) +
                              "\": expected auto, text or json");
}

void setup_logging(const LogSettings& settings) {
  const auto level = parse_level(settings.level);
  const LogStyle style = resolve_log_style(settings.format);
  // Colours only in text style and only on a terminal (the sink checks isatty and TERM).
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>(
      style == LogStyle::text ? spdlog::color_mode::automatic : spdlog::color_mode::never);
  install(std::move(sink), style, level);
}

void setup_logging(const LogSettings& settings, std::ostream& out) {
  const auto level = parse_level(settings.level);
  const LogStyle style = resolve_log_style(settings.format);
  install(std::make_shared<spdlog::sinks::ostream_sink_mt>(out, /*force_flush=*/true), style,
          level);
}

std::string redact_conninfo(std::string_view dsn) {
  // A URI starts with a scheme (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )).
  std::size_t i = 0;
  if (!dsn.empty() && std::isalpha(static_cast<unsigned char>(dsn[0]))) {
    while (i < dsn.size() && (std::isalnum(static_cast<unsigned char>(dsn[i])) || dsn[i] == '+' ||
                              dsn[i] == '-' || dsn[i] == '.')) {
      ++i;
    }
    if (dsn.substr(i).starts_with("://")) return redact_uri(dsn, i + 3);
  }
  return redact_keyword_value(dsn);
}

}  // namespace walbust
