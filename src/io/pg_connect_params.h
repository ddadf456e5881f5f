#pragma once
// What the non-blocking SQL connections (AsyncPgConnection) and the blocking replica
// inspection share: libpq connect parameters with bounded connects and keepalives.
// Private to src/io.
#include <string>
#include <utility>
#include <vector>

#include "walbust/core/message_text.h"

namespace walbust {

// Same defaults as the primary's connections: bounded connects and TCP keepalives, so a
// silently dead server is noticed; the user's conninfo (expanded from dbname) wins.
struct ConnectParams {
  std::vector<const char*> keys = {
      "connect_timeout",  "keepalives_idle", "keepalives_interval",      "keepalives_count",
      "tcp_user_timeout", "dbname",          "fallback_application_name"};
  std::vector<const char*> values;
  // `resolved`: HostResolver's keywords, after the conninfo so they win. The strings must
  // outlive the connect call.
  ConnectParams(const std::string& conninfo, const std::string& password,
                const char* application_name,
                const std::vector<std::pair<std::string, std::string>>& resolved = {})
      : values{"5", "10", "5", "3", "10000", conninfo.c_str(), application_name} {
    if (!password.empty()) {
      keys.push_back("password");
      values.push_back(password.c_str());
    }
    for (const auto& [key, value] : resolved) {
      keys.push_back(key.c_str());
      values.push_back(value.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
  }
};

inline void silence_notices(void*, const char*) {}

}  // namespace walbust
