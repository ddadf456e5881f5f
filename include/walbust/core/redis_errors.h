#pragma once
// What to do about a Redis error reply (docs/design.md): retry later, stop because
// the configuration is wrong, or follow a cluster redirection.
#include <string_view>

namespace walbust {

enum class RedisErrorClass {
  Retry,  // LOADING, BUSY, MASTERDOWN, TRYAGAIN, READONLY, OOM, unknown: back off and resend
  Fatal,  // NOPERM, WRONGPASS, NOAUTH, unknown command: an operator must fix the config
  Moved,  // cluster: the slot lives on another node
  Ask,    // cluster: the slot is migrating
};

[[nodiscard]] RedisErrorClass classify_redis_error(std::string_view message);

}  // namespace walbust
